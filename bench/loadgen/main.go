// Command loadgen posts AdmissionReviews over HTTPS and prints one JSON line of figures.
//
// Closed loop (-rate 0): -c connections, each sends its next request as soon as the
// previous answer is read. Open loop (-rate N): request i is scheduled at start + i/N and
// sent from its own goroutine, whatever the server is doing; its latency counts from its
// scheduled time, so time spent waiting (for a connection, for the server) is not hidden.
//
// The bodies come from -body, one JSON document per line, used in turn. An answer that is
// not HTTP 200, a transport error and a request slower than -timeout are failures; the
// percentiles are over every request, a failure counting as the time it took to fail.
// Answers that allow the request, and those that carry a patch, are counted too.
// Standard library only, so it builds offline.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	latency time.Duration
	ok      bool
	allowed bool
	patched bool
}

type summary struct {
	Requests int     `json:"requests"`
	Failures int     `json:"failures"`
	Timeouts int     `json:"timeouts"`
	Allowed  int     `json:"allowed"`
	Patched  int     `json:"patched"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	Late     int     `json:"late"`
	Warmup   int     `json:"warmup_requests"`
	Error    string  `json:"first_error,omitempty"`
}

type target struct {
	client  *http.Client
	url     string
	bodies  [][]byte
	next    atomic.Uint64
	timeout time.Duration

	mu       sync.Mutex
	firstErr string
	timeouts atomic.Int64
}

var (
	allowedMarker = []byte(`"allowed":true`)
	patchMarker   = []byte(`"patch"`)
)

// send posts the next body; scheduled is when the request was due.
func (t *target) send(ctx context.Context, scheduled time.Time) result {
	body := t.bodies[int(t.next.Add(1)-1)%len(t.bodies)]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		t.note(err.Error())
		return result{latency: time.Since(scheduled)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return t.failed(err, scheduled)
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return t.failed(err, scheduled)
	}
	latency := time.Since(scheduled)
	if resp.StatusCode != http.StatusOK {
		t.note(fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, answer))
		return result{latency: latency}
	}
	return result{latency: latency, ok: true, allowed: bytes.Contains(answer, allowedMarker),
		patched: bytes.Contains(answer, patchMarker)}
}

// failed records a transport error or a timeout.
func (t *target) failed(err error, scheduled time.Time) result {
	if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
		t.timeouts.Add(1)
	}
	t.note(err.Error())
	return result{latency: time.Since(scheduled)}
}

func (t *target) note(message string) {
	t.mu.Lock()
	if t.firstErr == "" {
		t.firstErr = message
	}
	t.mu.Unlock()
}

func (t *target) withTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), t.timeout)
}

// closedLoop runs `connections` senders back to back until `until`.
func closedLoop(t *target, connections int, until time.Time) []result {
	var wg sync.WaitGroup
	perWorker := make([][]result, connections)
	for w := 0; w < connections; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Now().Before(until) {
				ctx, cancel := t.withTimeout()
				perWorker[w] = append(perWorker[w], t.send(ctx, time.Now()))
				cancel()
			}
		}(w)
	}
	wg.Wait()
	var all []result
	for _, results := range perWorker {
		all = append(all, results...)
	}
	return all
}

// openLoop schedules rate requests per second for duration, each in its own goroutine.
// It returns the results and how many requests started more than 1 ms after their time.
func openLoop(t *target, rate float64, start time.Time, duration time.Duration) ([]result, int) {
	count := int(rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	results := make([]result, count)
	var wg sync.WaitGroup
	late := 0
	for i := 0; i < count; i++ {
		scheduled := start.Add(time.Duration(i) * interval)
		if wait := time.Until(scheduled); wait > 0 {
			time.Sleep(wait)
		} else if wait < -time.Millisecond {
			late++
		}
		wg.Add(1)
		go func(i int, scheduled time.Time) {
			defer wg.Done()
			// The deadline counts from the scheduled time too.
			ctx, cancel := context.WithDeadline(context.Background(), scheduled.Add(t.timeout))
			results[i] = t.send(ctx, scheduled)
			cancel()
		}(i, scheduled)
	}
	wg.Wait()
	return results, late
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	index := int(p*float64(len(sorted))+0.5) - 1
	if index < 0 {
		index = 0
	}
	if index >= len(sorted) {
		index = len(sorted) - 1
	}
	return sorted[index]
}

func summarize(results []result, elapsed time.Duration, late int, t *target) summary {
	latencies := make([]time.Duration, len(results))
	s := summary{Requests: len(results), Seconds: elapsed.Seconds(), Late: late}
	for i, r := range results {
		latencies[i] = r.latency
		if !r.ok {
			s.Failures++
		}
		if r.allowed {
			s.Allowed++
		}
		if r.patched {
			s.Patched++
		}
	}
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s.RPS = float64(len(results)-s.Failures) / elapsed.Seconds()
	s.P50ms = ms(percentile(latencies, 0.50))
	s.P99ms = ms(percentile(latencies, 0.99))
	if len(latencies) > 0 {
		s.MaxMs = ms(latencies[len(latencies)-1])
	}
	s.Timeouts = int(t.timeouts.Load())
	s.Error = t.firstErr
	return s
}

func readBodies(path string) ([][]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var bodies [][]byte
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		if line := bytes.TrimSpace(scanner.Bytes()); len(line) > 0 {
			bodies = append(bodies, append([]byte(nil), line...))
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if len(bodies) == 0 {
		return nil, fmt.Errorf("%s: no bodies (one JSON document per line)", path)
	}
	return bodies, nil
}

func main() {
	url := flag.String("url", "", "https URL to POST to")
	bodyFile := flag.String("body", "", "file of request bodies, one JSON document per line")
	caFile := flag.String("ca", "", "PEM file of the CA that signed the server's certificate")
	connections := flag.Int("c", 16, "connections (closed loop), or the connection pool's limit (open loop)")
	duration := flag.Duration("duration", 10*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", 2*time.Second, "warm-up in the same mode before measuring, not counted")
	rate := flag.Float64("rate", 0, "requests per second, open loop; 0 = closed loop")
	timeout := flag.Duration("timeout", 5*time.Second, "a request slower than this is a failure")
	flag.Parse()
	if *url == "" || *bodyFile == "" || *caFile == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url, -body and -ca are required")
		os.Exit(2)
	}
	bodies, err := readBodies(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fmt.Fprintf(os.Stderr, "loadgen: -ca %s: no PEM certificate in it\n", *caFile)
		os.Exit(2)
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxConnsPerHost:     *connections,
		MaxIdleConns:        *connections,
		MaxIdleConnsPerHost: *connections,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	t := &target{client: &http.Client{Transport: transport}, url: *url, bodies: bodies,
		timeout: *timeout}

	warmed := 0
	if *warmup > 0 && *rate > 0 {
		results, _ := openLoop(t, *rate, time.Now(), *warmup)
		warmed = len(results)
	} else if *warmup > 0 {
		warmed = len(closedLoop(t, *connections, time.Now().Add(*warmup)))
	}
	if *warmup > 0 {
		t.firstErr = ""
		t.timeouts.Store(0)
	}
	start := time.Now()
	var results []result
	late := 0
	if *rate > 0 {
		results, late = openLoop(t, *rate, start, *duration)
	} else {
		results = closedLoop(t, *connections, start.Add(*duration))
	}
	elapsed := time.Since(start)
	if *rate > 0 {
		elapsed = *duration // the offered window; stragglers do not dilute the rate
	}
	s := summarize(results, elapsed, late, t)
	s.Warmup = warmed
	line, _ := json.Marshal(s)
	fmt.Println(string(line))
}
