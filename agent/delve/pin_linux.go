package delve

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pinner keeps every thread of this worker on one CPU, and the Go scheduler
// to one P.
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
// The CPU is first the one the worker runs on, among those it may use (a
// cgroup's cpuset or an inherited affinity are kept). A pinned worker cannot
// leave a CPU that other work takes, and the traced process, stopped, would
// wait with it: check, once a second, moves it to the idlest allowed CPU
// when others kept its CPU busy, and pins threads started since.
type pinner struct {
	allowed unix.CPUSet
	cpu     int
	last    cpuTimes // at the last check
}

// cpuTimes are, per CPU, the ticks spent busy and idle, and this process's
// own ticks, as of one reading.
type cpuTimes struct {
	busy, idle map[int]uint64
	own        uint64
}

// pinToOneCPU pins this worker to the CPU it runs on. Errors are returned
// for the log; the worker then runs unpinned, only slower.
func pinToOneCPU() (*pinner, error) {
	p := &pinner{}
	if err := unix.SchedGetaffinity(0, &p.allowed); err != nil {
		return nil, fmt.Errorf("reading the CPU affinity: %w", err)
	}
	cpu := currentCPU()
	if cpu < 0 || !p.allowed.IsSet(cpu) {
		cpu = -1
		for c := 0; c < len(p.allowed)*64; c++ {
			if p.allowed.IsSet(c) {
				cpu = c
				break
			}
		}
		if cpu < 0 {
			return nil, fmt.Errorf("no CPU in the affinity mask")
		}
	}
	if err := p.pin(cpu); err != nil {
		return nil, err
	}
	// One CPU, one P: no thread spins to steal what another just woke.
	runtime.GOMAXPROCS(1)
	p.last = readCPUTimes()
	return p, nil
}

// pin moves every thread to cpu. Threads inherit the affinity of the thread
// that creates them, so once every thread listed is pinned, so are the ones
// to come; a thread may start while the list is read, so it goes round
// until a pass finds none to move. On an error it gives the threads back
// every allowed CPU.
func (p *pinner) pin(cpu int) error {
	var one unix.CPUSet
	one.Set(cpu)
	moved := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			p.unpin()
			return fmt.Errorf("listing this process's threads: %w", err)
		}
		fresh := 0
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil || moved[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &one); err != nil && err != unix.ESRCH {
				p.unpin()
				return fmt.Errorf("pinning thread %d to CPU %d: %w", tid, cpu, err)
			}
			moved[tid] = true
			fresh++
		}
		if fresh == 0 {
			p.cpu = cpu
			return nil
		}
	}
	p.unpin()
	return fmt.Errorf("threads kept starting while pinning them")
}

// unpin gives every thread every allowed CPU again.
func (p *pinner) unpin() {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		if tid, err := strconv.Atoi(task.Name()); err == nil {
			unix.SchedSetaffinity(tid, &p.allowed)
		}
	}
}

// Thresholds of check, in shares of the second since the last check.
const (
	othersBusy = 0.3 // others kept the worker's CPU this busy: move
	idleEnough = 0.5 // to a CPU at least this idle
)

// check moves the worker to the idlest allowed CPU if other work kept its
// CPU busy since the last check, and pins threads started since.
func (p *pinner) check() error {
	now := readCPUTimes()
	to := p.idler(p.last, now)
	p.last = now
	if to < 0 {
		to = p.cpu // threads started since the last pass, from any thread
	}
	return p.pin(to)
}

// idler returns the allowed CPU to move to between readings last and now,
// or -1 to stay: others kept the worker's CPU busy more than othersBusy of
// the time, and that CPU was idle more than idleEnough.
func (p *pinner) idler(last, now cpuTimes) int {
	if now.busy == nil || last.busy == nil {
		return -1
	}
	ticks := func(c int) (busy, idle float64) {
		return float64(now.busy[c] - last.busy[c]), float64(now.idle[c] - last.idle[c])
	}
	b, i := ticks(p.cpu)
	if b+i <= 0 || (b-float64(now.own-last.own))/(b+i) <= othersBusy {
		return -1 // idle, or busy with the worker's own work
	}
	best, bestIdle := -1, idleEnough
	for c := range now.idle {
		if c == p.cpu || !p.allowed.IsSet(c) {
			continue
		}
		if b, i := ticks(c); b+i > 0 && i/(b+i) > bestIdle {
			best, bestIdle = c, i/(b+i)
		}
	}
	return best
}

// readCPUTimes reads /proc/stat and this process's own CPU time; on an error
// the maps are nil and check does nothing.
func readCPUTimes() cpuTimes {
	var t cpuTimes
	f, err := os.Open("/proc/stat")
	if err != nil {
		return t
	}
	defer f.Close()
	t.busy, t.idle = map[int]uint64{}, map[int]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.HasPrefix(fields[0], "cpu") || fields[0] == "cpu" {
			continue
		}
		c, err := strconv.Atoi(fields[0][3:])
		if err != nil {
			continue
		}
		for i, v := range fields[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			switch i {
			case 3, 4: // idle, iowait
				t.idle[c] += n
			case 0, 1, 2, 5, 6, 7: // user, nice, system, irq, softirq, steal
				t.busy[c] += n
			}
		}
	}
	if stat, err := os.ReadFile("/proc/self/stat"); err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			f := strings.Fields(string(stat[i+2:]))
			if len(f) > 12 {
				u, _ := strconv.ParseUint(f[11], 10, 64)
				s, _ := strconv.ParseUint(f[12], 10, 64)
				t.own = u + s
			}
		}
	}
	return t
}

// currentCPU is the CPU the calling thread runs on, or -1.
func currentCPU() int {
	var cpu uint32
	if _, _, errno := syscall.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); errno != 0 {
		return -1
	}
	return int(cpu)
}
