// Command apiload creates objects through the Kubernetes API one after another, as kubectl
// does, and prints the latency of each create as a JSON summary: what a client of the API
// server sees, with or without admission webhooks registered. Standard library only.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"time"
)

func main() {
	server := flag.String("server", "", "API server URL, e.g. https://127.0.0.1:6443")
	caFile := flag.String("ca", "", "CA certificate file of the API server")
	certFile := flag.String("cert", "", "client certificate file")
	keyFile := flag.String("key", "", "client key file")
	kind := flag.String("kind", "policy", "policy or migration")
	count := flag.Int("n", 1000, "objects to create")
	prefix := flag.String("prefix", "bench", "name prefix, unique per run")
	namespace := flag.String("namespace", "hpc", "namespace of the migrations")
	vmi := flag.String("vmi", "db-vmi", "VMI of the migrations")
	flag.Parse()

	client, err := newClient(*caFile, *certFile, *keyFile)
	if err != nil {
		fail(err)
	}
	var latencies []float64
	failed := 0
	for i := 0; i < *count; i++ {
		url, body := object(*server, *kind, *prefix, i, *namespace, *vmi)
		started := time.Now()
		response, err := client.Post(url, "application/json", bytes.NewReader(body))
		elapsed := time.Since(started)
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, response.Body)
		response.Body.Close()
		if response.StatusCode != http.StatusCreated {
			failed++
			continue
		}
		latencies = append(latencies, float64(elapsed.Microseconds())/1000)
	}
	sort.Float64s(latencies)
	summary := map[string]any{"kind": *kind, "created": len(latencies), "failed": failed,
		"p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99)}
	json.NewEncoder(os.Stdout).Encode(summary)
}

func newClient(caFile, certFile, keyFile string) (*http.Client, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		Certificates: []tls.Certificate{pair}}, MaxIdleConnsPerHost: 1}
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}, nil
}

func object(server, kind, prefix string, i int, namespace, vmi string) (string, []byte) {
	if kind == "policy" {
		body, _ := json.Marshal(map[string]any{
			"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
			"metadata": map[string]any{"name": fmt.Sprintf("%s-%d", prefix, i)},
			"spec": map[string]any{"bandwidthPerMigration": "64Mi",
				"completionTimeoutPerGiB": 150, "allowAutoConverge": true,
				"selectors": map[string]any{"virtualMachineInstanceSelector": map[string]any{
					"bench": fmt.Sprintf("%s-%d", prefix, i)}}}})
		return server + "/apis/migrations.kubevirt.io/v1alpha1/migrationpolicies", body
	}
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
		"metadata": map[string]any{"name": fmt.Sprintf("%s-%d", prefix, i),
			"namespace": namespace},
		"spec": map[string]any{"vmiName": vmi}})
	return server + "/apis/kubevirt.io/v1/namespaces/" + namespace +
		"/virtualmachineinstancemigrations", body
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "apiload:", err)
	os.Exit(1)
}
