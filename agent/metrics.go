package agent

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what an agent counts for Prometheus.
type metrics struct {
	hits            *prometheus.CounterVec
	dropped         *prometheus.CounterVec
	uncounted       *prometheus.CounterVec
	unestimated     *prometheus.CounterVec
	attachErrors    prometheus.Counter
	attached        prometheus.Gauge
	publishFailures prometheus.Counter
	lost            *prometheus.CounterVec
	buffered        prometheus.Gauge
	bufferedBytes   prometheus.Gauge
	quarantined     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riptrace_hits_total", Help: "Hits delivered to the hit stream, by tracepoint.",
		}, []string{"tracepoint"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riptrace_hits_dropped_total", Help: "Hits the rate limit dropped, counted one by one, by tracepoint: a lower bound once probes are taken out (see riptrace_hits_dropped_uncounted_estimate_total).",
		}, []string{"tracepoint"}),
		uncounted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riptrace_hits_dropped_uncounted_estimate_total", Help: "An estimate, not a count, of the hits dropped while a tracepoint's probes were out because its allowance for the second was spent, by tracepoint; add it to riptrace_hits_dropped_total for the estimated drops in all, unless riptrace_hits_dropped_unestimated_total says some went without an estimate.",
		}, []string{"tracepoint"}),
		unestimated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riptrace_hits_dropped_unestimated_total", Help: "Times a tracepoint's probes were out with no estimate of the hits meanwhile (the rate the line ran at with the probes in said nothing of its rate without: they held it, the host starved the process, or the line slowed or stopped while they were out), by tracepoint: their hits are in neither riptrace_hits_dropped_total, then a lower bound, nor riptrace_hits_dropped_uncounted_estimate_total, which estimates the other put-backs only.",
		}, []string{"tracepoint"}),
		attachErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riptrace_attach_errors_total", Help: "Attaches that failed.",
		}),
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "riptrace_attached_processes", Help: "Processes the agent is attached to.",
		}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riptrace_publish_failures_total", Help: "Failed sends and acks of hits (each sends that hit again, after a backoff).",
		}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riptrace_hits_lost_total", Help: "Hits lost, by tracepoint: NATS could not take them and the hit buffer was full, the stream refused them (too big), or they were still kept when the agent stopped.",
		}, []string{"tracepoint"}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "riptrace_hits_buffered", Help: "Hits waiting for NATS to acknowledge them.",
		}),
		bufferedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "riptrace_hits_buffered_bytes", Help: "Encoded size of the hits waiting for NATS.",
		}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riptrace_tracepoints_quarantined_total", Help: "Tracepoints this agent stopped trying because handling them panicked or killed a backend process.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.dropped, m.uncounted, m.unestimated, m.attachErrors, m.attached, m.publishFailures, m.lost, m.buffered, m.bufferedBytes, m.quarantined)
	}
	return m
}

// stopTimer is a Target that measures how long its process was stopped.
type stopTimer interface {
	Stopped() time.Duration
}

// stoppedCollector exports, per attached process, the seconds it spent
// stopped by the backend (attach included), read from targets that measure
// it when the metrics are scraped.
type stoppedCollector struct {
	a    *Agent
	desc *prometheus.Desc
}

func registerStopped(reg prometheus.Registerer, a *Agent) {
	if reg == nil {
		return
	}
	reg.MustRegister(stoppedCollector{a, prometheus.NewDesc("riptrace_target_stopped_seconds_total",
		"Seconds the attached process spent stopped by the backend since it was attached (attach included), by pid.",
		[]string{"pid"}, nil)})
}

func (c stoppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c stoppedCollector) Collect(ch chan<- prometheus.Metric) {
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	for pid, att := range c.a.attached {
		if st, ok := att.target.(stopTimer); ok {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, st.Stopped().Seconds(), strconv.Itoa(pid))
		}
	}
}
