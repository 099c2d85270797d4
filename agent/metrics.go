package agent

import "github.com/prometheus/client_golang/prometheus"

// metrics are what an agent counts for Prometheus.
type metrics struct {
	hits            *prometheus.CounterVec
	dropped         *prometheus.CounterVec
	attachErrors    prometheus.Counter
	attached        prometheus.Gauge
	publishFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riptrace_hits_total", Help: "Hits published, by tracepoint.",
		}, []string{"tracepoint"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riptrace_hits_dropped_total", Help: "Hits the rate limit dropped, by tracepoint.",
		}, []string{"tracepoint"}),
		attachErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riptrace_attach_errors_total", Help: "Attaches that failed.",
		}),
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "riptrace_attached_processes", Help: "Processes the agent is attached to.",
		}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riptrace_publish_failures_total", Help: "Hits NATS refused to take.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.dropped, m.attachErrors, m.attached, m.publishFailures)
	}
	return m
}
