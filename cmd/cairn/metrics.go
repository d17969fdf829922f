package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cairn-backup/cairn/snapshot"
)

// metrics exposes the daemon's state to Prometheus (/metrics on
// --listen). Everything is read when scraped, from the vault's index and
// the policies' states, except job counts, which the daemon adds to as
// jobs end; vault totals are cached for a while, since summing them
// walks every point.
type metrics struct {
	v        *snapshot.Vault
	policies func(ctx context.Context) ([]policyView, error)
	jobs     *prometheus.CounterVec
	reg      *prometheus.Registry

	mu     sync.Mutex
	cached time.Time
	totals vaultTotals
}

type vaultTotals struct {
	protected, resources, points float64
	lastAdded                    map[string]float64 // resource → bytes its newest point added
}

var (
	descPolicySuccess  = prometheus.NewDesc("cairn_policy_last_success_timestamp_seconds", "When the policy's latest successful run ended (Unix time; 0: never).", []string{"policy"}, nil)
	descPolicyDuration = prometheus.NewDesc("cairn_policy_last_success_duration_seconds", "How long the policy's latest successful run took.", []string{"policy"}, nil)
	descPolicyRun      = prometheus.NewDesc("cairn_policy_last_run_timestamp_seconds", "When the policy's latest run started (Unix time; 0: never).", []string{"policy"}, nil)
	descPolicyOK       = prometheus.NewDesc("cairn_policy_last_run_success", "1 when the policy's latest run succeeded, 0 otherwise.", []string{"policy"}, nil)
	descProtected      = prometheus.NewDesc("cairn_vault_protected_bytes", "Sum of the disk sizes of every point.", nil, nil)
	descStored         = prometheus.NewDesc("cairn_vault_stored_bytes", "Bytes the vault's packs take.", nil, nil)
	descCapacity       = prometheus.NewDesc("cairn_vault_capacity_bytes", "The vault's capacity (0: none set).", nil, nil)
	descPoints         = prometheus.NewDesc("cairn_vault_points", "Points in the vault.", nil, nil)
	descResources      = prometheus.NewDesc("cairn_vault_resources", "Resources with points.", nil, nil)
	descAdded          = prometheus.NewDesc("cairn_point_added_bytes", "Bytes the resource's newest point added to the vault.", []string{"resource"}, nil)
)

// totalsFor is how long vault totals are reused between scrapes.
const totalsFor = 30 * time.Second

func newMetrics(v *snapshot.Vault, policies func(ctx context.Context) ([]policyView, error)) *metrics {
	m := &metrics{v: v, policies: policies, reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_jobs_total",
			Help: "Jobs the daemon ended, by kind and result."}, []string{"kind", "result"})}
	m.reg.MustRegister(m, m.jobs)
	return m
}

// jobEnded counts a job that ended with result (succeeded, failed,
// canceled, skipped).
func (m *metrics) jobEnded(kind, result string) { m.jobs.WithLabelValues(kind, result).Inc() }

// handler serves /metrics in Prometheus' text format; every other path
// is 404.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return mux
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPolicySuccess, descPolicyDuration, descPolicyRun, descPolicyOK,
		descProtected, descStored, descCapacity, descPoints, descResources, descAdded} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	if views, err := m.policies(ctx); err == nil {
		for _, pv := range views {
			st := pv.State
			gauge(descPolicySuccess, unix(st.LastSuccess), pv.Policy.Name)
			gauge(descPolicyDuration, st.LastSuccessDuration.Seconds(), pv.Policy.Name)
			gauge(descPolicyRun, unix(st.LastStart), pv.Policy.Name)
			ok := 0.0
			if st.LastResult == "success" {
				ok = 1
			}
			gauge(descPolicyOK, ok, pv.Policy.Name)
		}
	}
	gauge(descStored, float64(m.v.Used()))
	gauge(descCapacity, float64(m.v.Config().Capacity))
	if t, err := m.vaultTotals(); err == nil {
		gauge(descProtected, t.protected)
		gauge(descPoints, t.points)
		gauge(descResources, t.resources)
		for r, n := range t.lastAdded {
			gauge(descAdded, n, r)
		}
	}
}

func (m *metrics) vaultTotals() (vaultTotals, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.cached) < totalsFor {
		return m.totals, nil
	}
	points, err := m.v.Points("")
	if err != nil {
		return vaultTotals{}, err
	}
	t := vaultTotals{lastAdded: map[string]float64{}, points: float64(len(points))}
	for _, p := range points {
		t.protected += float64(p.Size())
		if _, ok := t.lastAdded[p.Resource]; !ok {
			t.resources++
		}
		t.lastAdded[p.Resource] = float64(p.Added) // oldest first: the newest wins
	}
	m.totals, m.cached = t, time.Now()
	return t, nil
}
