// Command kube-test-apiserver runs a real Kubernetes API server backed by an
// embedded etcd, for integration tests. Everything it needs (certificates,
// service-account key, admin token, etcd data, kubeconfig) lives in the
// directory given with -dir, so restarting it on the same directory keeps
// the stored objects and the credentials.
//
// Usage:
//
//	kube-test-apiserver -dir DIR
//
// Files in DIR:
//
//	kubeconfig      admin kubeconfig (token auth, system:masters)
//	ready           created once /readyz answers ok; removed at start and exit
//	ports.json      ports in use; reused on restart when they are free
//	pid             process id of the running server
//	apiserver.log   kube-apiserver log (everything the process writes to stderr)
//	etcd.log        embedded etcd log
//	etcd/           etcd data
//	pki/            CA, serving certificate and service-account signing key
//	tokens.csv      static token file for the admin user
//	admin.token     the admin user's bearer token
//	lock            held while a server runs on DIR; a second one refuses to start
//
// SIGTERM or SIGINT stops the API server and etcd; the exit status is 0.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/sys/unix"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as in kube-apiserver's main
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as in kube-apiserver's main
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as in kube-apiserver's main
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const (
	serviceCIDR    = "10.0.0.0/24"
	serviceIP      = "10.0.0.1"
	saIssuer       = "https://kubernetes.default.svc.cluster.local"
	extraAudience  = "registry-api"
	adminUser      = "admin"
	adminGroup     = "system:masters"
	readyTimeout   = 5 * time.Minute
	etcdStartLimit = 60 * time.Second
)

// out is where this program's own messages go: the original stderr, since
// file descriptor 2 is redirected to apiserver.log.
var out io.Writer = os.Stderr

func logf(format string, args ...any) {
	fmt.Fprintf(out, "kube-test-apiserver: "+format+"\n", args...)
}

func main() {
	dir := flag.String("dir", "", "state directory (created if missing; reused if it exists)")
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: kube-test-apiserver -dir DIR")
		os.Exit(2)
	}
	os.Exit(run(*dir))
}

type ports struct {
	APIServer  int `json:"apiserver"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

func run(dir string) int {
	dir, err := filepath.Abs(dir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		logf("%v", err)
		return 1
	}
	// Two servers on one directory would fight over etcd's data and rewrite
	// each other's ports and kubeconfig.
	lock, err := lockDir(dir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer lock.Close() // also keeps the descriptor from being collected
	readyFile := filepath.Join(dir, "ready")
	if err := os.Remove(readyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		logf("%v", err)
		return 1
	}
	defer os.Remove(readyFile)

	// stop is closed on the first SIGTERM or SIGINT. Before the API server
	// runs, run returns on its own; afterwards the API server's handler
	// (installed by NewAPIServerCommand) shuts it down and cli.Run returns.
	stop := make(chan struct{})
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigc
		close(stop)
	}()
	stopping := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}

	if err := redirectStderr(filepath.Join(dir, "apiserver.log")); err != nil {
		logf("redirecting stderr: %v", err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		logf("%v", err)
		return 1
	}

	p, err := choosePorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		logf("choosing ports: %v", err)
		return 1
	}
	creds, err := ensureCredentials(dir)
	if err != nil {
		logf("generating credentials: %v", err)
		return 1
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", p.APIServer)
	if err := writeKubeconfig(filepath.Join(dir, "kubeconfig"), server, creds); err != nil {
		logf("writing kubeconfig: %v", err)
		return 1
	}

	etcd, err := startEtcd(dir, p)
	if err != nil {
		logf("starting etcd: %v", err)
		return 1
	}
	defer etcd.Close()
	go func() {
		if err, ok := <-etcd.Err(); ok && err != nil && !stopping() {
			logf("etcd failed: %v", err)
			os.Exit(1)
		}
	}()

	// A signal that arrives while the API server is still starting makes
	// its post-start hooks fail, and kube-apiserver then exits through
	// klog.Fatal. That is the requested stop, not a failure: close etcd and
	// exit 0.
	klog.OsExit = func(code int) {
		select {
		case <-stop:
		case <-time.After(200 * time.Millisecond):
			os.Exit(code)
		}
		os.Remove(readyFile)
		etcd.Close()
		os.Exit(0)
	}

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs([]string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", p.EtcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(p.APIServer),
		"--tls-cert-file=" + creds.servingCert,
		"--tls-private-key-file=" + creds.servingKey,
		"--client-ca-file=" + creds.caCert,
		"--token-auth-file=" + creds.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + saIssuer,
		"--api-audiences=" + saIssuer + "," + extraAudience,
		"--service-account-key-file=" + creds.saKey,
		"--service-account-signing-key-file=" + creds.saKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	})
	if stopping() {
		return 0
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go waitReady(ctx, server, creds, readyFile)

	code := cli.Run(cmd)
	cancel()
	os.Remove(readyFile)
	if code != 0 {
		if stopping() {
			return 0
		}
		logf("kube-apiserver exited with status %d; see %s", code, filepath.Join(dir, "apiserver.log"))
	}
	return code
}

// lockDir takes an exclusive lock on dir/lock, held while the returned file
// is open.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		pid, _ := os.ReadFile(filepath.Join(dir, "pid"))
		return nil, fmt.Errorf("%s is in use by another kube-test-apiserver (pid %s): %w", dir, strings.TrimSpace(string(pid)), err)
	}
	return f, nil
}

// redirectStderr points file descriptor 2 at path, so that kube-apiserver's
// logs (klog writes to stderr) and any crash output go to the file, and
// keeps the original stderr for this program's own messages.
func redirectStderr(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	orig, err := unix.Dup(int(os.Stderr.Fd()))
	if err != nil {
		return err
	}
	if err := unix.Dup2(int(f.Fd()), 2); err != nil {
		return err
	}
	out = os.NewFile(uintptr(orig), "stderr")
	fmt.Fprintf(f, "---- %s kube-test-apiserver starting (pid %d)\n", time.Now().Format(time.RFC3339), os.Getpid())
	return nil
}

// choosePorts reuses the ports recorded in path when they are free and
// picks new free loopback ports otherwise, then records the result.
func choosePorts(path string) (ports, error) {
	var p ports
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &p)
	}
	used := map[int]bool{}
	for _, port := range []*int{&p.APIServer, &p.EtcdClient, &p.EtcdPeer} {
		if *port > 0 && !used[*port] && portFree(*port) {
			used[*port] = true
			continue
		}
		for {
			n, err := freePort()
			if err != nil {
				return p, err
			}
			if !used[n] {
				*port = n
				used[n] = true
				break
			}
		}
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	return p, writeFileAtomic(path, append(b, '\n'), 0o644)
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dir string, p ports) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kube-test"
	cfg.Dir = filepath.Join(dir, "etcd")
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.EtcdPeer)}
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.EtcdClient)}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "kube-test"
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	// Test data only: durability across machine crashes is not needed, and
	// skipping fsync keeps the API server fast on slow disks. A clean stop
	// (or even a killed process) keeps the data, as it is in the page cache.
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(etcdStartLimit):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd not ready after %v; see %s", etcdStartLimit, filepath.Join(dir, "etcd.log"))
	}
}

// waitReady polls /readyz and creates the ready file once it answers ok.
func waitReady(ctx context.Context, server string, creds *credentials, readyFile string) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(creds.caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(readyTimeout)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+creds.token)
		if resp, err := client.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
				if err := writeFileAtomic(readyFile, []byte(server+"\n"), 0o644); err != nil {
					logf("writing %s: %v", readyFile, err)
					return
				}
				logf("ready at %s", server)
				return
			}
		}
		if time.Now().After(deadline) {
			logf("not ready after %v", readyTimeout)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type credentials struct {
	caCert, servingCert, servingKey, saKey, tokenFile string
	caPEM                                             []byte
	token                                             string
}

// ensureCredentials creates the PKI, the service-account key and the admin
// token in dir unless they already exist.
func ensureCredentials(dir string) (*credentials, error) {
	pki := filepath.Join(dir, "pki")
	c := &credentials{
		caCert:      filepath.Join(pki, "ca.crt"),
		servingCert: filepath.Join(pki, "apiserver.crt"),
		servingKey:  filepath.Join(pki, "apiserver.key"),
		saKey:       filepath.Join(pki, "sa.key"),
		tokenFile:   filepath.Join(dir, "tokens.csv"),
	}
	caKeyFile := filepath.Join(pki, "ca.key")
	tokenPlain := filepath.Join(dir, "admin.token")

	if !exists(c.caCert, caKeyFile, c.servingCert, c.servingKey) {
		if err := generatePKI(c.caCert, caKeyFile, c.servingCert, c.servingKey); err != nil {
			return nil, err
		}
	}
	if !exists(c.saKey) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		if err := writeFileAtomic(c.saKey, b, 0o600); err != nil {
			return nil, err
		}
	}
	if !exists(tokenPlain, c.tokenFile) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		token := hex.EncodeToString(raw)
		line := fmt.Sprintf("%s,%s,%s,\"%s\"\n", token, adminUser, adminUser, adminGroup)
		if err := writeFileAtomic(c.tokenFile, []byte(line), 0o600); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(tokenPlain, []byte(token+"\n"), 0o600); err != nil {
			return nil, err
		}
	}

	var err error
	if c.caPEM, err = os.ReadFile(c.caCert); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(tokenPlain)
	if err != nil {
		return nil, err
	}
	c.token = strings.TrimSpace(string(b))
	return c, nil
}

func generatePKI(caCertFile, caKeyFile, certFile, keyFile string) error {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kube-test-apiserver-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback, net.ParseIP(serviceIP)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}

	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// Keys first, certificates last: a certificate file only exists once its
	// key has been written.
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{caKeyFile, "PRIVATE KEY", caKeyDER, 0o600},
		{keyFile, "PRIVATE KEY", keyDER, 0o600},
		{caCertFile, "CERTIFICATE", caDER, 0o644},
		{certFile, "CERTIFICATE", der, 0o644},
	} {
		if err := writeFileAtomic(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

func writeKubeconfig(path, server string, c *credentials) error {
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: kube-test
  context:
    cluster: kube-test
    user: %s
    namespace: default
current-context: kube-test
`, server, base64.StdEncoding.EncodeToString(c.caPEM), adminUser, c.token, adminUser)
	return writeFileAtomic(path, []byte(kubeconfig), 0o600)
}

func exists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
