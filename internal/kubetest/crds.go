package kubetest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// IstioAPIVersion is the istio.io/api module whose CRDs the tests install:
// registry-api builds Istio objects without its Go types, so go.mod does not
// name it.
const IstioAPIVersion = "v1.32.0"

// RoutingCRDs are the CRD files of the routing objects registry-api exports:
// the Gateway API's standard channel, at the version go.mod requires, and
// Istio's, at IstioAPIVersion. They are read from the Go module cache,
// which `go mod download` fills from the module proxy like any dependency.
func RoutingCRDs() ([]string, error) {
	gateway, err := moduleDir("sigs.k8s.io/gateway-api", "")
	if err != nil {
		return nil, err
	}
	istio, err := moduleDir("istio.io/api", IstioAPIVersion)
	if err != nil {
		return nil, err
	}
	standard := filepath.Join(gateway, "config", "crd", "standard")
	return []string{
		filepath.Join(standard, "gateway.networking.k8s.io_grpcroutes.yaml"),
		filepath.Join(standard, "gateway.networking.k8s.io_referencegrants.yaml"),
		filepath.Join(standard, "gateway.networking.k8s.io_gateways.yaml"),
		filepath.Join(istio, "kubernetes", "customresourcedefinitions.gen.yaml"),
	}, nil
}

// PrometheusOperatorVersion is the prometheus-operator module whose
// ServiceMonitor CRD the tests install: deploy/components/service-monitor
// writes one without the operator's Go types, so go.mod does not name it.
const PrometheusOperatorVersion = "v0.85.0"

// MonitoringCRDs are the CRD files of the Prometheus Operator kinds deploy/
// writes: ServiceMonitor, as the operator's release publishes it, read from
// the Go module cache like RoutingCRDs.
func MonitoringCRDs() ([]string, error) {
	dir, err := moduleDir("github.com/prometheus-operator/prometheus-operator", PrometheusOperatorVersion)
	if err != nil {
		return nil, err
	}
	return []string{
		filepath.Join(dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_servicemonitors.yaml"),
	}, nil
}

// moduleDir is where the go command keeps a module's source: the version
// go.mod requires when version is empty, else that version, downloaded.
func moduleDir(module, version string) (string, error) {
	if version == "" {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
		if err != nil {
			return "", fmt.Errorf("go list -m %s: %w", module, err)
		}
		if dir := strings.TrimSpace(string(out)); dir != "" {
			return dir, nil
		}
		// Required but not yet downloaded.
		out, err = exec.Command("go", "list", "-m", "-f", "{{.Version}}", module).Output()
		if err != nil {
			return "", fmt.Errorf("go list -m %s: %w", module, err)
		}
		version = strings.TrimSpace(string(out))
	}
	out, err := exec.Command("go", "mod", "download", "-json", module+"@"+version).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", module, version, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s %v", module, version, info.Error, err)
	}
	return info.Dir, nil
}

// InstallCRDs applies CRD files to the server and waits until it serves
// them. Applying again is harmless, so tests sharing a server may each call it.
func (s *Server) InstallCRDs(files ...string) error {
	args := []string{"apply", "--server-side", "--force-conflicts"}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	if out, err := s.Kubectl(args...); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	if out, err := s.Kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}
