package delve

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pinToOneCPU keeps every thread of this worker on one CPU, and the Go
// scheduler to one P.
//
// A hit costs the worker dozens of hand-overs between goroutines: Delve sends
// each ptrace request to the one thread that traces the process and waits
// for it, around thirty times per hit. Across CPUs each hand-over is a
// wake-up of another CPU, and other threads of the scheduler spin to steal
// the woken goroutine; on one CPU it is a plain context switch. Measured on
// the hot loop of `make bench` (2 CPUs, a VM): 1500–1900 µs per hit unpinned,
// 530–760 µs pinned. The worker never has two things to do at once: the
// process is stopped while it works, and it runs while the worker sleeps.
//
// The CPU is the one the worker runs on now, among those it may use (a
// cgroup's cpuset or an inherited affinity are kept). Errors are returned
// for the log; the worker then runs unpinned, only slower.
func pinToOneCPU() (cpu int, err error) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return -1, fmt.Errorf("reading the CPU affinity: %w", err)
	}
	cpu = currentCPU()
	if cpu < 0 || !allowed.IsSet(cpu) {
		cpu = -1
		for c := 0; c < len(allowed)*64; c++ {
			if allowed.IsSet(c) {
				cpu = c
				break
			}
		}
		if cpu < 0 {
			return -1, fmt.Errorf("no CPU in the affinity mask")
		}
	}
	var one unix.CPUSet
	one.Set(cpu)
	// Threads inherit the affinity of the thread that creates them, so once
	// every thread listed is pinned, so are the ones to come. A thread may
	// start while the list is read: go round until a pass pins none anew.
	pinned := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return -1, fmt.Errorf("listing this process's threads: %w", err)
		}
		fresh := 0
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil || pinned[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &one); err != nil && err != unix.ESRCH {
				return -1, fmt.Errorf("pinning thread %d to CPU %d: %w", tid, cpu, err)
			}
			pinned[tid] = true
			fresh++
		}
		if fresh == 0 {
			// One CPU, one P: no thread spins to steal what another just
			// woke.
			runtime.GOMAXPROCS(1)
			return cpu, nil
		}
	}
	return -1, fmt.Errorf("threads kept starting while pinning them")
}

// currentCPU is the CPU the calling thread runs on, or -1.
func currentCPU() int {
	var cpu uint32
	if _, _, errno := syscall.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); errno != 0 {
		return -1
	}
	return int(cpu)
}
