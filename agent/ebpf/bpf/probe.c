// probe.c: the BPF side of the eBPF backend. One program, capture, serves
// every uprobe of a process: the probe's cookie picks its plan, the plan says
// which memory to copy (the frame, the goroutine, and the bytes that the
// variables' pointers lead to), and the copy goes to user space through a
// ring buffer as a list of (address, bytes) regions. The agent decodes them
// with the DWARF types; it never reads the process itself for a hit. A
// record is built in its CPU's scratch, which one run holds at a time: a
// run can be preempted (see capture).
//
// Build (the object is committed, so that building the agent needs no
// clang): go generate ./agent/ebpf
//
// SPDX-License-Identifier: (MIT OR GPL-2.0)

#include <linux/types.h>
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

typedef __u8 u8;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;
struct pt_regs;

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static u64 (*bpf_get_current_pid_tgid)(void) = (void *)BPF_FUNC_get_current_pid_tgid;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *src) = (void *)BPF_FUNC_probe_read_user;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)BPF_FUNC_probe_read_kernel;
static long (*bpf_ringbuf_output)(void *rb, void *data, u64 size, u64 flags) = (void *)BPF_FUNC_ringbuf_output;
static u64 (*bpf_get_attach_cookie)(void *ctx) = (void *)BPF_FUNC_get_attach_cookie;
static long (*bpf_loop)(u32 nr, void *fn, void *ctx, u64 flags) = (void *)BPF_FUNC_loop;

#define MAX_OPS 64      // capture operations per probe
#define MAX_FRAMES 32   // frame-pointer links followed
#define NREGS 21        // struct pt_regs on x86_64, in 8-byte words
#define REG_SP 19
#define REG_BP 4
#define DATA_MASK 0x3fff // regions start below 16 KiB ...
#define READ_MASK 0xfff  // ... and are at most 4 KiB long
#define BUF_SIZE (sizeof(struct header) + DATA_MASK + 1 + READ_MASK + 1 + 16)
#define STACK_WORDS 64   // the stack is read 512 bytes at a time (see stack_read)

// Where a word comes from.
enum {
	SRC_NONE = 0,
	SRC_REG = 1,    // the value of register reg
	SRC_STACK = 2,  // the word at SP + off
	SRC_OP = 3,     // the word at (the pointer of op) + off
	SRC_SPADDR = 4, // the address SP + off itself
};

struct src {
	u8 kind;
	u8 reg;
	u8 op;
	u8 pad;
	s32 off;
};

// op copies min(len * elem, max) bytes (max bytes without a len) from the
// address ptr holds.
struct op {
	struct src ptr;
	struct src len;
	u32 elem;
	u32 max;
};

// cond is a tracepoint's condition when it is a comparison of an integer
// variable with a constant: hits it filters out cost no copy and no token.
// The agent evaluates every condition again on what was copied.
enum { COND_NONE, COND_EQ, COND_NE, COND_LT, COND_LE, COND_GT, COND_GE };

struct cond {
	struct src var;
	u8 op;
	u8 size;   // bytes of the variable: 1, 2, 4 or 8
	u8 signed_;
	u8 pad[5];
	s64 value;
};

struct plan {
	u32 bucket; // the tracepoint's rate limit
	u32 frames; // frame-pointer links to copy
	u32 nops;
	u32 pad;
	struct cond cond;
	struct op ops[MAX_OPS];
};

// bucket is a token bucket of rate tokens per second holding at most rate,
// kept as a theoretical arrival time (the generic cell rate algorithm) so
// that CPUs can share it with compare-and-swap: tracing programs cannot
// take spin locks.
struct bucket {
	u64 rate;    // hits per second; 0: no limit
	u64 tat;     // ns: when the bucket will be full again, as if hits came evenly
	u64 dropped; // since the last hit that reached user space
	u64 full;    // of dropped, those the full ring buffer refused
	u64 disarm;  // not 0: say in spent when the allowance is spent
	u64 spent;   // when it was spent (ns), once per arming; 0: not yet
	u64 wasted;  // hits refused since then, each a trap for nothing
	u64 seen;    // hits that met the bucket in this arming, taken or not
	u64 first;   // when the first hit of this arming met it (ns); 0: none yet
	u64 nested;  // of dropped, those that met their CPU's scratch busy (see capture)
};

// A spent record tells the agent that a bucket's allowance is spent: it
// takes the tracepoint's probes out until the next window, so that the
// hits it would refuse cost no trap (see agent.Disarm).
struct spent_rec {
	u32 bucket;
	u32 pad;
	u64 time;
	u64 first; // the bucket's first: when the window started
};

struct header {
	u64 cookie;
	u64 time;
	u64 dropped;
	u64 full; // of dropped, those the full ring buffer refused
	u64 nested; // of dropped, those that met their CPU's scratch busy
	u32 tid;
	u32 size; // bytes of regions after the header
	u64 regs[NREGS];
};

struct region {
	u64 addr;
	u32 len;
	u32 pad;
};

struct scratch {
	// busy is 1 while a run of capture builds a record here (see capture).
	u64 busy;
	u64 ptrs[MAX_OPS];
	// A read of the stack (see stack_read): words of it from base up.
	// These live here rather than in loopctx, on the BPF stack, where
	// the verifier would follow each of their values through the loops.
	u64 stack[STACK_WORDS];
	u64 base;
	u32 words;
	u32 failed; // a read of STACK_WORDS words failed: no more are tried
	u8 buf[BUF_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct plan);
} plans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} spent SEC(".maps");

// refuse counts a refused hit; the first refusal of an arming tells the
// agent, at once, to take the probes out.
static __always_inline void refuse(struct bucket *b, u32 bk, u64 now)
{
	__sync_fetch_and_add(&b->dropped, 1);
	if (!b->disarm)
		return;
	if (b->spent) {
		__sync_fetch_and_add(&b->wasted, 1);
		return;
	}
	if (__sync_val_compare_and_swap(&b->spent, 0, now) == 0) {
		struct spent_rec r = {.bucket = bk, .time = now, .first = b->first};
		bpf_ringbuf_output(&spent, &r, sizeof(r), BPF_RB_FORCE_WAKEUP);
	}
}

// take_count returns *p and zeroes it, sparing the atomic exchange when it
// is zero, as it is at almost every hit: a count added meanwhile goes to the
// next hit.
static __always_inline u64 take_count(u64 *p)
{
	if (*(volatile u64 *)p == 0)
		return 0;
	return __sync_lock_test_and_set(p, 0);
}

// take reports whether the bucket allows a hit now; a refused hit is counted.
static __always_inline int take(struct bucket *b, u32 bk, u64 now, u64 *dropped)
{
	u64 rate = b->rate;
	// The first hit says the probes are in, and starts the window.
	if (!b->first)
		__sync_val_compare_and_swap(&b->first, 0, now);
	if (b->disarm)
		__sync_fetch_and_add(&b->seen, 1);
	if (rate == 0) {
		*dropped = take_count(&b->dropped);
		return 1;
	}
	u64 interval = 1000000000ULL / rate;
	u64 tau = interval * (rate - 1); // rate hits at once, then one per interval
	for (int i = 0; i < 16; i++) {
		u64 old = b->tat;
		u64 tat = old > now ? old : now;
		if (tat - now > tau)
			break;
		if (__sync_val_compare_and_swap(&b->tat, old, tat + interval) == old) {
			*dropped = take_count(&b->dropped);
			return 1;
		}
	}
	refuse(b, bk, now);
	return 0;
}

static __always_inline u64 word(struct scratch *s, u64 *regs, struct src *src)
{
	u64 v = 0;
	u64 sp = regs[REG_SP];
	switch (src->kind) {
	case SRC_REG:
		return regs[src->reg < NREGS ? src->reg : 0];
	case SRC_STACK:
		bpf_probe_read_user(&v, 8, (void *)(sp + (s64)src->off));
		return v;
	case SRC_OP:
		bpf_probe_read_user(&v, 8, (void *)(s->ptrs[src->op & (MAX_OPS - 1)] + (s64)src->off));
		return v;
	case SRC_SPADDR:
		return sp + (s64)src->off;
	}
	return 0;
}

// copy appends the region [addr, addr+n) at *off; on a fault it tries the
// first 8 bytes, then gives up on the region.
static __always_inline void copy(struct scratch *s, u32 *off, u64 addr, u32 n)
{
	u32 o = *off;
	if (n == 0 || addr == 0 || o > DATA_MASK)
		return;
	n &= READ_MASK;
	u8 *dst = s->buf + sizeof(struct header) + (o & DATA_MASK);
	if (bpf_probe_read_user(dst + sizeof(struct region), n, (void *)addr) != 0) {
		if (n <= 8 || bpf_probe_read_user(dst + sizeof(struct region), 8, (void *)addr) != 0)
			return;
		n = 8;
	}
	struct region *r = (struct region *)dst;
	r->addr = addr;
	r->len = n;
	r->pad = 0;
	*off = o + sizeof(struct region) + ((n + 7) & ~7);
}

// holds evaluates a plan's condition on w, the word of its variable.
static __always_inline int holds(u64 w, struct cond *c)
{
	s64 v;
	switch (c->size) {
	case 1:
		v = c->signed_ ? (s64)(__s8)w : (s64)(u8)w;
		break;
	case 2:
		v = c->signed_ ? (s64)(__s16)w : (s64)(__u16)w;
		break;
	case 4:
		v = c->signed_ ? (s64)(__s32)w : (s64)(u32)w;
		break;
	default:
		v = (s64)w;
	}
	if (!c->signed_ && c->size == 8) {
		u64 u = w, k = (u64)c->value;
		switch (c->op) {
		case COND_EQ: return u == k;
		case COND_NE: return u != k;
		case COND_LT: return u < k;
		case COND_LE: return u <= k;
		case COND_GT: return u > k;
		case COND_GE: return u >= k;
		}
		return 1;
	}
	switch (c->op) {
	case COND_EQ: return v == c->value;
	case COND_NE: return v != c->value;
	case COND_LT: return v < c->value;
	case COND_LE: return v <= c->value;
	case COND_GT: return v > c->value;
	case COND_GE: return v >= c->value;
	}
	return 1;
}

// loopctx is the state of the loops over a plan's ops and over the frame
// pointers; bpf_loop callbacks keep the verifier's work linear in the loop
// body rather than in its iterations.
struct loopctx {
	struct scratch *s;
	struct plan *p;
	u32 off;
	u32 nops;
	u32 frames;
	u32 pad;
	u64 bp;
};

// The stack is read STACK_WORDS words at a time into s->stack, for the
// frame's own window and for the frame-pointer links that fall in it: a
// read of user memory costs about as much for 8 bytes as for 512 (most of
// it is the checks around the copy, not the copy), and callers' frames lie
// one above the other. The regions copied are the same as if each were read
// alone, the goroutine being stopped. stack_read fills s->stack from addr
// and reports whether it could: at the end of a mapping it cannot, and from
// then on each region is read alone.
static __always_inline int stack_read(struct scratch *s, u64 addr)
{
	s->words = 0;
	if (s->failed || bpf_probe_read_user(s->stack, sizeof(s->stack), (void *)addr) != 0) {
		s->failed = 1; // the end of a mapping is near: read region by region
		return 0;
	}
	s->base = addr;
	s->words = STACK_WORDS;
	return 1;
}

// stack_copy appends the region [addr, addr+n) of the stack from s->stack,
// filling it from addr if it is empty; it reports whether it did.
static __always_inline int stack_copy(struct loopctx *c, u64 addr, u64 n)
{
	struct scratch *s = c->s;
	u32 o = c->off;
	if (n == 0 || n > sizeof(s->stack) || o > DATA_MASK)
		return 0;
	if (s->words == 0 && !stack_read(s, addr))
		return 0;
	if (addr < s->base || addr - s->base + n > (u64)s->words * 8)
		return 0;
	u64 from = addr - s->base;
	if (from >= sizeof(s->stack))
		return 0;
	u8 *dst = s->buf + sizeof(struct header) + (o & DATA_MASK);
	if ((from & 7) == 0) {
		// Word by word: a helper's call would cost about what the read of
		// the process did. The bytes past n up to a word are the region's
		// padding.
		u64 *to = (u64 *)(dst + sizeof(struct region));
		u32 w = from / 8;
#pragma clang loop unroll(full)
		for (int k = 0; k < STACK_WORDS; k++) {
			if (k * 8 >= n)
				break;
			to[k] = s->stack[(w + k) & (STACK_WORDS - 1)];
		}
	} else if (bpf_probe_read_kernel(dst + sizeof(struct region), n & (2 * sizeof(s->stack) - 1), (u8 *)s->stack + from) != 0)
		return 0;
	struct region *r = (struct region *)dst;
	r->addr = addr;
	r->len = n;
	r->pad = 0;
	c->off = o + sizeof(struct region) + ((n + 7) & ~7);
	return 1;
}

static long run_op(u32 i, struct loopctx *c)
{
	if (i >= c->nops)
		return 1;
	struct scratch *s = c->s;
	struct header *h = (struct header *)s->buf;
	struct op *o = &c->p->ops[i & (MAX_OPS - 1)];
	u64 ptr = word(s, h->regs, &o->ptr);
	s->ptrs[i & (MAX_OPS - 1)] = ptr;
	u64 n = o->max;
	if (o->len.kind != SRC_NONE) {
		u64 l = word(s, h->regs, &o->len);
		if (l < n / (o->elem ? o->elem : 1))
			n = l * o->elem;
	}
	if (o->ptr.kind == SRC_SPADDR && o->len.kind == SRC_NONE && stack_copy(c, ptr, n))
		return 0;
	copy(s, &c->off, ptr, n);
	return 0;
}

// run_frame copies one link of the frame-pointer chain: the caller's saved
// BP and the return address, which is all an unwinder needs above this
// frame. It takes a link from s->stack when it lies there, and reads the
// stack from the link otherwise (see stack_read); where that fails, it reads
// the link alone. The next link is the saved BP, from the copy.
static long run_frame(u32 i, struct loopctx *c)
{
	u64 bp = c->bp;
	if (i >= c->frames || bp == 0)
		return 1;
	struct scratch *s = c->s;
	if (bp < s->base || ((bp - s->base) & 7) != 0 || bp - s->base + 16 > (u64)s->words * 8)
		stack_read(s, bp);
	u32 before = c->off;
	if (s->words == 0) {
		copy(s, &c->off, bp, 16);
		if (c->off == before || before > DATA_MASK)
			return 1;
	} else {
		if (before > DATA_MASK)
			return 1;
		u32 w = (u32)((bp - s->base) / 8);
		u8 *dst = s->buf + sizeof(struct header) + (before & DATA_MASK);
		struct region *r = (struct region *)dst;
		r->addr = bp;
		r->len = 16;
		r->pad = 0;
		((u64 *)(dst + sizeof(struct region)))[0] = s->stack[w & (STACK_WORDS - 1)];
		((u64 *)(dst + sizeof(struct region)))[1] = s->stack[(w + 1) & (STACK_WORDS - 1)];
		c->off = before + sizeof(struct region) + 16;
	}
	u64 next = *(u64 *)(s->buf + sizeof(struct header) + ((before + sizeof(struct region)) & DATA_MASK));
	if (next <= bp)
		return 1;
	c->bp = next;
	return 0;
}

// ctx_word is word for a condition's variable, read from the registers
// in ctx rather than from a copy of them in the scratch. A condition's
// variable is in a register or on the stack (plan_linux.go's compileCond).
static __always_inline u64 ctx_word(struct pt_regs *ctx, struct src *src)
{
	u64 v = 0, sp = 0;
	switch (src->kind) {
	case SRC_REG:
		bpf_probe_read_kernel(&v, 8, (u64 *)ctx + (src->reg < NREGS ? src->reg : 0));
		return v;
	case SRC_STACK:
		bpf_probe_read_kernel(&sp, 8, (u64 *)ctx + REG_SP);
		bpf_probe_read_user(&v, 8, (void *)(sp + (s64)src->off));
		return v;
	case SRC_SPADDR:
		bpf_probe_read_kernel(&sp, 8, (u64 *)ctx + REG_SP);
		return sp + (s64)src->off;
	}
	return 0;
}

// nested counts a hit that found its CPU's scratch busy. It writes nothing
// there: the hit is dropped, and counted with its reason, unless its
// condition, evaluated on the registers alone, filters it out.
static __always_inline void nested(struct pt_regs *ctx, struct plan *p, struct bucket *b)
{
	if (p->cond.op != COND_NONE && !holds(ctx_word(ctx, &p->cond.var), &p->cond))
		return;
	if (b->disarm)
		__sync_fetch_and_add(&b->seen, 1);
	__sync_fetch_and_add(&b->nested, 1);
	__sync_fetch_and_add(&b->dropped, 1);
}

// record builds a hit's record in s and sends it; s is the caller's.
static __always_inline void record(struct pt_regs *ctx, u64 cookie, struct plan *p, struct bucket *b, u32 bk, struct scratch *s)
{
	struct header *h = (struct header *)s->buf;
	s->words = 0;
	s->failed = 0;
	__builtin_memcpy(h->regs, ctx, sizeof(h->regs));
	if (p->cond.op != COND_NONE && !holds(word(s, h->regs, &p->cond.var), &p->cond))
		return;
	u64 now = bpf_ktime_get_ns();
	u64 dropped = 0;
	if (!take(b, bk, now, &dropped))
		return;
	h->cookie = cookie;
	h->time = now;
	h->dropped = dropped;
	h->full = take_count(&b->full);
	h->nested = take_count(&b->nested);
	h->tid = (u32)bpf_get_current_pid_tgid();

	struct loopctx c = {.s = s, .p = p, .nops = p->nops, .frames = p->frames, .bp = h->regs[REG_BP]};
	bpf_loop(MAX_OPS, run_op, &c, 0);
	bpf_loop(MAX_FRAMES, run_frame, &c, 0);
	u32 off = c.off;

	h->size = off;
	u64 size = sizeof(struct header) + (u64)off;
	if (size > BUF_SIZE)
		size = BUF_SIZE;
	if (bpf_ringbuf_output(&events, s->buf, size, 0) != 0) {
		__sync_fetch_and_add(&b->dropped, dropped + 1);
		__sync_fetch_and_add(&b->full, h->full + 1);
		__sync_fetch_and_add(&b->nested, h->nested);
	}
}

// capture builds each record in its CPU's scratch, which one run at a time
// may hold. The kernel runs a uprobe's program under rcu_read_lock and
// migrate_disable, not preempt_disable (bpf_prog_run_array_uprobe, and
// uprobe_prog_run for uprobe_multi links), and with no per-CPU recursion
// check (kprobes' bpf_prog_active): under a preemptible kernel
// (preempt=full or lazy) a run can be preempted mid-record and another
// thread, on the same CPU, hit a probe. Its run would overwrite the first
// one's half-built record, which would then mix two hits' values. So a run
// takes the CPU's scratch with an atomic exchange (BPF_XCHG), and a hit
// that finds it taken is dropped and counted (nested), never copied; the
// agent reports why (Hit.Throttle). Only runs on this CPU see this busy,
// migration being disabled, so the release is a plain store after the
// record is sent. Under preempt=none or voluntary nothing preempts a run
// (it calls no helper that sleeps), and no hit is dropped here.
SEC("uprobe")
int capture(struct pt_regs *ctx)
{
	u64 cookie = bpf_get_attach_cookie(ctx);
	u32 key = cookie;
	struct plan *p = bpf_map_lookup_elem(&plans, &key);
	if (!p)
		return 0;
	u32 bk = p->bucket;
	struct bucket *b = bpf_map_lookup_elem(&buckets, &bk);
	if (!b)
		return 0;
	u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	if (__sync_lock_test_and_set(&s->busy, 1) != 0) {
		nested(ctx, p, b);
		return 0;
	}
	record(ctx, cookie, p, b, bk, s);
	// The run's stores to s come before the release (and a run that
	// preempted this one on its CPU would have found s busy).
	__asm__ __volatile__("" ::: "memory");
	*(volatile u64 *)&s->busy = 0;
	return 0;
}

// count is the bare uprobe `make bench` measures against: it counts hits
// and nothing else.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} counts SEC(".maps");

SEC("uprobe")
int count(struct pt_regs *ctx)
{
	u32 zero = 0;
	u64 *c = bpf_map_lookup_elem(&counts, &zero);
	if (c)
		__sync_fetch_and_add(c, 1);
	return 0;
}

char _license[] SEC("license") = "Dual MIT/GPL";
