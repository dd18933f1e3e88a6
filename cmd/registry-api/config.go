package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/election"
	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/follow"
	httpapi "github.com/acme/registry-api/internal/http"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/routesync"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/upkeep"
	"github.com/acme/registry-api/internal/watch"
	"github.com/acme/registry-api/internal/write"
)

// Config is the whole configuration of the service. Its defaults are those of
// a cluster deployment; `make run` sets the memory store.
type Config struct {
	Addr             string        `envconfig:"REGISTRY_ADDR" desc:"listen address"`
	Store            string        `envconfig:"REGISTRY_STORE" desc:"kube (Kubernetes API server) or memory (in-process, for local runs and tests)"`
	Seed             string        `envconfig:"REGISTRY_SEED" desc:"memory store: file of ConfigMaps (YAML or JSON, as kubectl get -o yaml prints) to start with"`
	SeedRefresh      bool          `envconfig:"REGISTRY_SEED_KEEPALIVE" desc:"memory store: refresh the seeded entries' run_date every TTL/2, standing in for running instances (demos)"`
	Namespaces       []string      `envconfig:"REGISTRY_NAMESPACES" desc:"comma-separated namespaces to watch; * watches all, polled with one cluster-wide LIST of metadata"`
	PollInterval     time.Duration `envconfig:"REGISTRY_POLL_INTERVAL" desc:"interval between polls of the registry ConfigMaps (a LIST of their metadata; only those that changed are read)"`
	TTL              time.Duration `envconfig:"REGISTRY_TTL" desc:"a node is alive while now - run_date <= TTL"`
	RunDateZone      string        `envconfig:"REGISTRY_RUN_DATE_ZONE" desc:"time zone in which run_date values without a zone are read"`
	MaxClockSkew     time.Duration `envconfig:"REGISTRY_MAX_CLOCK_SKEW" desc:"a run_date further ahead of this clock is reported (run_date_in_future), and the entry's liveness counts from when its value last changed"`
	LogLevel         string        `envconfig:"REGISTRY_LOG_LEVEL" desc:"debug, info, warn or error"`
	LogFormat        string        `envconfig:"REGISTRY_LOG_FORMAT" desc:"json or console"`
	ShutdownTimeout  time.Duration `envconfig:"REGISTRY_SHUTDOWN_TIMEOUT" desc:"how long in-flight requests may take to finish on SIGTERM"`
	MaxInFlight      int           `envconfig:"REGISTRY_MAX_IN_FLIGHT" desc:"requests a replica answers at once (probes and metrics aside); beyond it the answer is 503 overloaded with Retry-After"`
	BodyReadTimeout  time.Duration `envconfig:"REGISTRY_BODY_READ_TIMEOUT" desc:"how long a request body may take to arrive; a slower one is answered 408 request_timeout"`
	MaxBodyBytes     int64         `envconfig:"REGISTRY_MAX_BODY_BYTES" desc:"bytes of request bodies a replica holds at once (32 MiB); past it the answer is 503 overloaded with Retry-After"`
	LogLineBytes     int           `envconfig:"REGISTRY_LOG_LINE_BYTES" desc:"longest log line written; a longer one is replaced by a short line that says so"`
	LogFlushInterval time.Duration `envconfig:"REGISTRY_LOG_FLUSH_INTERVAL" desc:"log lines are written out together at most this long after they are logged (error lines at once); 0 writes each line at once"`
	Kubeconfig       string        `envconfig:"REGISTRY_KUBECONFIG" desc:"kube store outside a pod: kubeconfig file (REGISTRY_KUBECONFIG, else KUBECONFIG, else ~/.kube/config)"`

	ReadOnly          bool          `envconfig:"REGISTRY_READ_ONLY" desc:"refuse registrations, heartbeats and deregistrations (405 read_only); serve reads only"`
	WriteNamespace    string        `envconfig:"REGISTRY_WRITE_NAMESPACE" desc:"namespace for writes to an env no watched namespace holds yet; default the first of REGISTRY_NAMESPACES; must be watched unless watching all"`
	WriteBatchWindow  time.Duration `envconfig:"REGISTRY_WRITE_BATCH_WINDOW" desc:"how long a write waits for others to the same ConfigMap to share its read-modify-write; 0 writes each alone"`
	MaxConfigMapBytes int           `envconfig:"REGISTRY_MAX_CONFIGMAP_BYTES" desc:"refuse registrations (507 registry_full) that would grow a registry ConfigMap's data past this many bytes; at most 1048576, the API server's limit"`

	Auth           string   `envconfig:"REGISTRY_AUTH" desc:"kubernetes (writes need a ServiceAccount token, checked with a TokenReview) or none; default kubernetes with the kube store, none with the memory store"`
	TokenAudiences []string `envconfig:"REGISTRY_TOKEN_AUDIENCES" desc:"comma-separated audiences a token must be meant for (the projected token's audience)"`
	AdminSubjects  []string `envconfig:"REGISTRY_ADMIN_SUBJECTS" desc:"comma-separated usernames and group:<name> that may write any namespace's envs and any entry, the Go library's included"`
	ReadAuth       bool     `envconfig:"REGISTRY_READ_AUTH" desc:"require a valid token for the read API too (probes, metrics and the API document stay open)"`

	MaxFollowers int `envconfig:"REGISTRY_MAX_FOLLOWERS" desc:"open route event streams and blocked queries this replica holds at most; beyond it they answer 503 too_many_followers (ordinary requests are not counted)"`

	GCAfter                  time.Duration `envconfig:"REGISTRY_GC_AFTER" desc:"the leader removes entries whose run_date is older, whoever wrote them; 0 disables"`
	VersionRefresh           bool          `envconfig:"REGISTRY_VERSION_REFRESH" desc:"the leader refreshes the run_date of version registrations whose Service has ready endpoints every REGISTRY_TTL/2, for the Go library's readers; false writes nothing for them"`
	LeaderLeaseName          string        `envconfig:"REGISTRY_LEASE_NAME" desc:"name of the coordination.k8s.io Lease that elects the leader (keepalive of pod-bound entries, GC)"`
	LeaderLeaseNamespace     string        `envconfig:"REGISTRY_LEASE_NAMESPACE" desc:"namespace of the leader Lease; default POD_NAMESPACE, else the first of REGISTRY_NAMESPACES"`
	LeaderLeaseDuration      time.Duration `envconfig:"REGISTRY_LEASE_DURATION" desc:"how long the other replicas wait for a silent leader before one takes over; whole seconds"`
	LeaderLeaseRenewDeadline time.Duration `envconfig:"REGISTRY_LEASE_RENEW_DEADLINE" desc:"how long the leader tries to renew the leader Lease before it stops leading"`
	LeaderLeaseRetryPeriod   time.Duration `envconfig:"REGISTRY_LEASE_RETRY_PERIOD" desc:"interval between attempts to acquire or renew the leader Lease"`

	Gateway            string        `envconfig:"REGISTRY_GATEWAY" desc:"<namespace>/<name>[/<sectionName>]: the Gateway that exported GRPCRoutes, and those route sync keeps, attach to (their parentRefs); ?gateway= overrides it for an export"`
	IstioVersionHeader string        `envconfig:"REGISTRY_ISTIO_VERSION_HEADER" desc:"lowercase request header whose value (a version) selects that version's subset in exported VirtualServices and those route sync keeps, e.g. x-version; empty adds no such routes"`
	SyncGRPCRoutes     bool          `envconfig:"REGISTRY_SYNC_GRPCROUTES" desc:"the leader keeps each app's GRPCRoutes, and the ReferenceGrants they need, in step with the route table; needs REGISTRY_GATEWAY"`
	SyncIstio          bool          `envconfig:"REGISTRY_SYNC_ISTIO" desc:"the leader keeps each app's VirtualServices and DestinationRules in step with the route table"`
	SyncGrace          time.Duration `envconfig:"REGISTRY_SYNC_GRACE" desc:"how long the routes that route sync keeps outlive their method's last live instance; nothing is removed for this long after a leader starts or the registry's data comes back fresh"`

	// OnListen, when set, is told the bound address (tests listen on :0).
	OnListen func(net.Addr) `ignored:"true"`
}

// Defaults that belong to no package but this one.
const (
	defaultAddr            = ":8080"
	defaultNamespace       = "firefly"
	defaultShutdownTimeout = 15 * time.Second
	// defaultServiceName names the service's Lease and is the audience of
	// the tokens it accepts.
	defaultServiceName = "registry-api"
)

// defaultConfig is the configuration of an empty environment. Each value is
// declared once, by the package it configures where there is one; usage,
// the README's table (TestREADMEConfigTableIsComplete) and envconfig read
// them from here.
func defaultConfig() Config {
	return Config{
		Addr:                     defaultAddr,
		Store:                    "kube",
		Namespaces:               []string{defaultNamespace},
		PollInterval:             watch.DefaultInterval,
		TTL:                      model.DefaultTTL,
		RunDateZone:              "UTC",
		MaxClockSkew:             model.DefaultMaxClockSkew,
		LogLevel:                 "info",
		LogFormat:                "json",
		ShutdownTimeout:          defaultShutdownTimeout,
		MaxInFlight:              httpapi.DefaultMaxInFlight,
		BodyReadTimeout:          httpapi.DefaultBodyReadTimeout,
		MaxBodyBytes:             httpapi.DefaultMaxBodyBytes,
		LogLineBytes:             defaultLogLineBytes,
		LogFlushInterval:         defaultLogFlushInterval,
		WriteBatchWindow:         write.DefaultBatchWindow,
		MaxConfigMapBytes:        write.DefaultMaxConfigMapBytes,
		TokenAudiences:           []string{defaultServiceName},
		MaxFollowers:             follow.DefaultMaxFollowers,
		GCAfter:                  upkeep.DefaultGCAfter,
		VersionRefresh:           true,
		LeaderLeaseName:          defaultServiceName,
		LeaderLeaseDuration:      election.DefaultLeaseDuration,
		LeaderLeaseRenewDeadline: election.DefaultRenewDeadline,
		LeaderLeaseRetryPeriod:   election.DefaultRetryPeriod,
		SyncGrace:                routesync.DefaultGrace,
	}
}

// loadConfig reads the configuration from the process environment with
// envconfig and derives the settings from it. Every variable is named in full in its field's
// tag (the prefix is empty), so the library's fallback to a bare name is the
// same name: a stray TTL or GC_AFTER in a pod's environment changes nothing.
func loadConfig(getenv func(string) string) (settings, error) {
	// envconfig leaves a field whose variable is unset as it finds it.
	cfg := defaultConfig()
	if err := envconfig.Process("", &cfg); err != nil {
		var parse *envconfig.ParseError
		if errors.As(err, &parse) {
			// Said as the operator wrote it: the variable, its value and
			// what it takes, not the parser's words.
			return settings{}, fmt.Errorf("%s=%q: %s", parse.KeyName, parse.Value, wantOfType(parse.TypeName))
		}
		return settings{}, fmt.Errorf("read configuration: %w", err)
	}
	return cfg.derive(getenv)
}

// wantOfType says what a variable of a Go type takes, for an operator.
func wantOfType(typeName string) string {
	switch typeName {
	case "bool":
		return "want true or false"
	case "time.Duration":
		return "want a duration with its unit, such as 500ms, 10s, 2m or 1h30m"
	case "int", "int64":
		return "want a whole number, in digits"
	default:
		return "not a value of this variable"
	}
}

// configVar is one variable of Config, as its field's tags declare it.
type configVar struct {
	field, key, def, meaning string
}

// configVars lists Config's variables in the order they are declared, with
// their defaults as an operator would write them.
func configVars() []configVar {
	t := reflect.TypeFor[Config]()
	defaults := reflect.ValueOf(defaultConfig())
	vars := make([]configVar, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if key := f.Tag.Get("envconfig"); key != "" && f.Tag.Get("ignored") != "true" {
			vars = append(vars, configVar{field: f.Name, key: key, def: formatDefault(defaults.Field(i).Interface()), meaning: f.Tag.Get("desc")})
		}
	}
	return vars
}

// formatDefault writes a default as its variable would be set to it; "" for
// none (a zero duration or number is a value, an empty string or list none).
func formatDefault(v any) string {
	switch v := v.(type) {
	case time.Duration:
		// 15m rather than time's 15m0s.
		s := v.String()
		if strings.HasSuffix(s, "m0s") || strings.HasSuffix(s, "h0m0s") {
			s = strings.TrimSuffix(strings.TrimSuffix(s, "0s"), "0m")
		}
		return s
	case []string:
		return strings.Join(v, ",")
	case bool:
		return strconv.FormatBool(v)
	default:
		return fmt.Sprint(v)
	}
}

// check checks what needs no deriving.
func (c *Config) check() error {
	switch c.Store {
	case "kube", "memory":
	default:
		return fmt.Errorf("REGISTRY_STORE=%q: want kube or memory", c.Store)
	}
	if err := checkAddr(c.Addr); err != nil {
		return err
	}
	if slices.ContainsFunc(c.TokenAudiences, func(a string) bool { return strings.TrimSpace(a) == "" }) {
		return fmt.Errorf("REGISTRY_TOKEN_AUDIENCES=%q: want one or more comma-separated audiences, none of them empty", strings.Join(c.TokenAudiences, ","))
	}
	if c.Seed != "" && c.Store != "memory" {
		return fmt.Errorf("REGISTRY_SEED is only read by the memory store (REGISTRY_STORE=memory)")
	}
	if c.PollInterval <= 0 {
		return fmt.Errorf("REGISTRY_POLL_INTERVAL=%s: must be positive", c.PollInterval)
	}
	if c.TTL <= 0 {
		return fmt.Errorf("REGISTRY_TTL=%s: must be positive", c.TTL)
	}
	if _, err := logLevel(c.LogLevel); err != nil {
		return err
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		return fmt.Errorf("REGISTRY_LOG_FORMAT=%q: want json or console", c.LogFormat)
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("REGISTRY_SHUTDOWN_TIMEOUT=%s: must not be negative (0 waits for no request)", c.ShutdownTimeout)
	}
	// 0 means httpapi.DefaultMaxInFlight, as in a Config built in code.
	if c.MaxInFlight < 0 {
		return fmt.Errorf("REGISTRY_MAX_IN_FLIGHT=%d: must not be negative (0 means the default, %d)", c.MaxInFlight, httpapi.DefaultMaxInFlight)
	}
	// 0 means httpapi.DefaultMaxBodyBytes, as in a Config built in code.
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > 0 && c.MaxBodyBytes < httpapi.LargestBody {
		return fmt.Errorf("REGISTRY_MAX_BODY_BYTES=%d: want %d or more, so that the largest valid body fits (0 means the default, %d)", c.MaxBodyBytes, httpapi.LargestBody, httpapi.DefaultMaxBodyBytes)
	}
	// 0 means httpapi.DefaultBodyReadTimeout, as in a Config built in code.
	if c.BodyReadTimeout < 0 {
		return fmt.Errorf("REGISTRY_BODY_READ_TIMEOUT=%s: must not be negative (0 means the default, %s)", c.BodyReadTimeout, formatDefault(httpapi.DefaultBodyReadTimeout))
	}
	// 0, a Config built in code, means the defaults.
	if c.LogFlushInterval < 0 || c.LogFlushInterval > maxLogFlushInterval {
		return fmt.Errorf("REGISTRY_LOG_FLUSH_INTERVAL=%s: want 0 to %s", c.LogFlushInterval, maxLogFlushInterval)
	}
	if c.LogLineBytes != 0 && c.LogLineBytes < minLogLineBytes {
		return fmt.Errorf("REGISTRY_LOG_LINE_BYTES=%d: want %d or more (0 means the default, %d)", c.LogLineBytes, minLogLineBytes, defaultLogLineBytes)
	}
	// 0, a Config built in code, means model.DefaultMaxClockSkew.
	if c.MaxClockSkew < 0 {
		return fmt.Errorf("REGISTRY_MAX_CLOCK_SKEW=%s: must not be negative", c.MaxClockSkew)
	}
	if c.MaxFollowers < 0 {
		return fmt.Errorf("REGISTRY_MAX_FOLLOWERS=%d: must not be negative", c.MaxFollowers)
	}
	if c.WriteBatchWindow < 0 || c.WriteBatchWindow >= c.TTL/2 {
		// A heartbeat held longer than half the TTL could arrive too late.
		return fmt.Errorf("REGISTRY_WRITE_BATCH_WINDOW=%s: must be from 0 to less than half of REGISTRY_TTL (%s)", c.WriteBatchWindow, c.TTL)
	}
	// 0 means write.DefaultMaxConfigMapBytes, as in a Config built in code.
	if c.MaxConfigMapBytes < 0 || c.MaxConfigMapBytes > store.MaxConfigMapBytes {
		return fmt.Errorf("REGISTRY_MAX_CONFIGMAP_BYTES=%d: want at most %d, the API server's limit (0 means the default, %d)", c.MaxConfigMapBytes, store.MaxConfigMapBytes, write.DefaultMaxConfigMapBytes)
	}
	if err := c.validateAuth(); err != nil {
		return err
	}
	return c.validateRouting()
}

// checkAddr checks REGISTRY_ADDR before anything listens on it, so that a
// mistake is reported under the variable's name.
func checkAddr(addr string) error {
	const want = `want [host]:port with a port from 0 to 65535, such as ":8080" or "127.0.0.1:8080"`
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("REGISTRY_ADDR=%q: %s", addr, want)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("REGISTRY_ADDR=%q: port %q: %s", addr, port, want)
	}
	if host != "" && strings.ContainsAny(host, " /") {
		return fmt.Errorf("REGISTRY_ADDR=%q: host %q: %s", addr, host, want)
	}
	return nil
}

// validateRouting checks the export's and the route sync's settings.
func (c *Config) validateRouting() error {
	if h := c.IstioVersionHeader; h != "" && !export.ValidHeaderName(h) {
		return fmt.Errorf("REGISTRY_ISTIO_VERSION_HEADER=%q: want a lowercase header name", h)
	}
	// Checked with route sync off too: a mistake should not wait to be
	// found until the day route sync is switched on.
	if c.SyncGrace < 0 {
		return fmt.Errorf("REGISTRY_SYNC_GRACE=%s: must not be negative", c.SyncGrace)
	}
	if !c.SyncGRPCRoutes && !c.SyncIstio {
		return nil
	}
	switch {
	case c.SyncGRPCRoutes && c.Gateway == "":
		return errors.New("REGISTRY_SYNC_GRPCROUTES=true needs REGISTRY_GATEWAY: routes that no Gateway reads route nothing")
	case c.Store != "kube":
		return errors.New("REGISTRY_SYNC_GRPCROUTES and REGISTRY_SYNC_ISTIO need REGISTRY_STORE=kube: the objects live in its API server")
	case c.ReadOnly:
		return errors.New("REGISTRY_SYNC_GRPCROUTES and REGISTRY_SYNC_ISTIO run on the elected leader, which a read-only replica (REGISTRY_READ_ONLY=true) never is")
	}
	return nil
}

// gateway is REGISTRY_GATEWAY parsed; nil when unset.
func (c *Config) gateway() (*export.ParentRef, error) {
	if c.Gateway == "" {
		return nil, nil
	}
	ref, err := export.ParseParentRef(c.Gateway)
	if err != nil {
		return nil, fmt.Errorf("REGISTRY_GATEWAY=%q: %w", c.Gateway, err)
	}
	return &ref, nil
}

// Values of REGISTRY_AUTH.
const (
	authKubernetes = "kubernetes"
	authNone       = "none"
)

// authMode returns REGISTRY_AUTH, or its default for the store: a cluster's
// registry is guarded, a local memory store is not.
func (c *Config) authMode() string {
	if c.Auth != "" {
		return c.Auth
	}
	if c.Store == "memory" {
		return authNone
	}
	return authKubernetes
}

func (c *Config) validateAuth() error {
	switch c.authMode() {
	case authKubernetes:
		if c.Store != "kube" {
			return fmt.Errorf("REGISTRY_AUTH=kubernetes needs REGISTRY_STORE=kube: tokens are checked by its API server")
		}
	case authNone:
		if c.ReadAuth {
			return fmt.Errorf("REGISTRY_READ_AUTH=true needs REGISTRY_AUTH=kubernetes")
		}
	default:
		return fmt.Errorf("REGISTRY_AUTH=%q: want kubernetes or none", c.Auth)
	}
	// 0, a Config built in code, means GC off and the lease defaults.
	if c.GCAfter < 0 {
		return fmt.Errorf("REGISTRY_GC_AFTER=%s: must not be negative (0 disables GC)", c.GCAfter)
	}
	if c.GCAfter > 0 && c.GCAfter <= c.TTL {
		// Anything younger may still be alive.
		return fmt.Errorf("REGISTRY_GC_AFTER=%s: must exceed REGISTRY_TTL (%s), or be 0 to disable GC", c.GCAfter, c.TTL)
	}
	if ns := strings.TrimSpace(c.LeaderLeaseNamespace); ns != "" {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return fmt.Errorf("REGISTRY_LEASE_NAMESPACE=%q: not a namespace name: %s", ns, strings.Join(msgs, "; "))
		}
	}
	if c.LeaderLeaseName != "" {
		if msgs := validation.IsDNS1123Subdomain(c.LeaderLeaseName); len(msgs) > 0 {
			return fmt.Errorf("REGISTRY_LEASE_NAME=%q: not an object name: %s", c.LeaderLeaseName, strings.Join(msgs, "; "))
		}
	}
	if _, _, _, err := election.Timings(c.LeaderLeaseDuration, c.LeaderLeaseRenewDeadline, c.LeaderLeaseRetryPeriod); err != nil {
		return fmt.Errorf("REGISTRY_LEASE_DURATION=%s, REGISTRY_LEASE_RENEW_DEADLINE=%s, REGISTRY_LEASE_RETRY_PERIOD=%s: %w",
			c.LeaderLeaseDuration, c.LeaderLeaseRenewDeadline, c.LeaderLeaseRetryPeriod, err)
	}
	return nil
}

// settings are the configuration with every value derived from it worked
// out once, by derive: serve and what it wires read these, so that nothing
// downstream derives a value again or drops an error doing so.
type settings struct {
	Config
	zone           *time.Location
	namespaces     model.Watched
	writeNamespace string
	admins         auth.Subjects
	gateway        *export.ParentRef
	// proc is what the process's environment says beside the REGISTRY_
	// variables, read with them.
	proc processEnv
}

// processEnv is the environment that Kubernetes and the shell give the
// process: the pod's identity (the downward API) and where credentials are.
type processEnv struct {
	podNamespace, podName string
	// kubeconfig is $KUBECONFIG; inCluster is true inside a pod.
	kubeconfig string
	inCluster  bool
	home       string
}

func readProcessEnv(getenv func(string) string) processEnv {
	return processEnv{
		podNamespace: strings.TrimSpace(getenv("POD_NAMESPACE")),
		podName:      strings.TrimSpace(getenv("POD_NAME")),
		kubeconfig:   getenv("KUBECONFIG"),
		inCluster:    getenv("KUBERNETES_SERVICE_HOST") != "",
		home:         getenv("HOME"),
	}
}

// derive checks c and works out its values, with what getenv says of the
// process: the one place the configuration is worked out.
func (c Config) derive(getenv func(string) string) (settings, error) {
	if err := c.check(); err != nil {
		return settings{}, err
	}
	s := settings{Config: c, proc: readProcessEnv(getenv)}
	if s.LeaderLeaseName == "" {
		// A Config built in code may leave it out; its default is declared
		// once, in defaultConfig.
		s.LeaderLeaseName = defaultConfig().LeaderLeaseName
	}
	var err error
	if s.zone, err = time.LoadLocation(c.RunDateZone); err != nil {
		return settings{}, fmt.Errorf("REGISTRY_RUN_DATE_ZONE=%q: %w", c.RunDateZone, err)
	}
	if s.namespaces, err = c.watchedNamespaces(); err != nil {
		return settings{}, err
	}
	if s.writeNamespace, err = c.writeNamespace(); err != nil {
		return settings{}, err
	}
	if s.admins, err = auth.ParseSubjects(c.AdminSubjects); err != nil {
		return settings{}, fmt.Errorf("REGISTRY_ADMIN_SUBJECTS: %w", err)
	}
	if s.gateway, err = c.gateway(); err != nil {
		return settings{}, err
	}
	return s, nil
}

// leaderLeaseNamespace is where the leader Lease lives: the service's own
// namespace. ok is false when none can be told (watching all namespaces
// without POD_NAMESPACE).
func (s *settings) leaderLeaseNamespace() (string, bool) {
	if ns := strings.TrimSpace(s.LeaderLeaseNamespace); ns != "" {
		return ns, true
	}
	if ns := s.proc.podNamespace; ns != "" {
		return ns, true
	}
	if s.namespaces.All() {
		return "", false
	}
	return s.namespaces[0], true
}

// writeNamespace returns where writes to an env that no watched namespace
// holds go: REGISTRY_WRITE_NAMESPACE, else the first watched namespace; ""
// when watching all without one, so that such writes must name theirs.
func (c *Config) writeNamespace() (string, error) {
	watched, err := c.watchedNamespaces()
	if err != nil {
		return "", err
	}
	ns := strings.TrimSpace(c.WriteNamespace)
	if ns == "" && watched.All() {
		return "", nil
	}
	if ns == "" {
		return watched[0], nil
	}
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return "", fmt.Errorf("REGISTRY_WRITE_NAMESPACE=%q: not a namespace name: %s", ns, strings.Join(msgs, "; "))
	}
	// The replica reads its writes back only from the namespaces it watches.
	if !watched.Has(ns) {
		return "", fmt.Errorf("REGISTRY_WRITE_NAMESPACE=%q: not one of the watched namespaces (REGISTRY_NAMESPACES=%s)", ns, strings.Join(watched, ","))
	}
	return ns, nil
}

// watchedNamespaces returns the namespaces to LIST.
func (c *Config) watchedNamespaces() (model.Watched, error) {
	var out []string
	for _, ns := range c.Namespaces {
		ns = strings.TrimSpace(ns)
		switch {
		case ns == "":
		case ns == "*":
			if len(c.Namespaces) > 1 {
				return nil, fmt.Errorf("REGISTRY_NAMESPACES: * cannot be combined with named namespaces")
			}
			return model.AllNamespaces(), nil
		default:
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				// Such a namespace cannot exist: watching it would serve an
				// empty registry and fail only on the first write.
				return nil, fmt.Errorf("REGISTRY_NAMESPACES: %q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
			}
			out = append(out, ns)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("REGISTRY_NAMESPACES is empty: name at least one namespace, or * for all")
	}
	return out, nil
}

// printUsage lists every variable with its default and meaning.
func printUsage(w io.Writer) error {
	fmt.Fprintln(w, "registry-api serves the Kubernetes-hosted service registry over HTTP/JSON.")
	fmt.Fprintln(w, "\nUsage: registry-api [--help] [--version]")
	fmt.Fprintln(w, "\n  --help     print this help and exit")
	fmt.Fprintln(w, "  --version  print the version and exit")
	fmt.Fprintln(w, "\nConfiguration, from the environment:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	for _, v := range configVars() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.key, v.def, v.meaning)
	}
	return tw.Flush()
}
