// Package localkafka starts a throwaway Apache Kafka broker for tests,
// benchmarks and demos, from the jars that scripts/ensure-kafka.sh fetches.
//
//	srv, err := localkafka.Start(ctx, localkafka.Options{})
//	if err != nil { ... }
//	defer srv.Stop()
//	client, err := kgo.NewClient(kgo.SeedBrokers(srv.URL()))
//
// The broker is a single KRaft node (process.roles=broker,controller,
// node.id=1) with a PLAINTEXT listener and a CONTROLLER listener on
// 127.0.0.1 only, a small heap, and its data and logs in a temporary
// directory that [Server.Stop] removes. The internal topics have one
// replica, so that transactions and consumer groups work on one broker, and
// topics are not created on first use: a test creates the ones it needs.
// The broker runs as the calling user (Kafka does not refuse root).
//
// [Server.Kill] ends the broker with SIGKILL, as a crash would, and
// [Server.Restart] starts it again on the same ports and data directory,
// so that topics and committed transactions survive. Both ports default to
// free ports below 32768 (see [FreePort]), which the kernel does not hand
// out to outgoing connections, so that nothing takes them while the broker
// is down.
//
// The package speaks no Kafka beyond the ApiVersions request of [Ready]:
// the module it lives in has no Kafka client. The public
// projections/kafkasink/kafkatest wraps it and checks the broker's
// metadata with franz-go.
package localkafka

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stratadev/strata/internal/localproc"
)

// Version is the Kafka version scripts/ensure-kafka.sh installs by default.
const Version = "4.1.1"

const (
	// HeapDefault is the default of [Options.Heap].
	HeapDefault = "512m"
	// StartTimeoutDefault is the default of [Options.StartTimeout].
	StartTimeoutDefault = 2 * time.Minute
	// StopTimeoutDefault is how long [Server.Stop] waits for a graceful
	// shutdown before it kills the broker.
	StopTimeoutDefault = 20 * time.Second
)

// ErrNotInstalled means no Kafka jars were found. Its message is the one
// line a person needs to fix that.
var ErrNotInstalled = errors.New("no Kafka found: run scripts/ensure-kafka.sh (make ensure-kafka), or set TEST_KAFKA_URL, or STRATA_SKIP_KAFKA=1 to skip those tests")

// ErrStopped is returned by [Server.Restart] after [Server.Stop]: the
// broker's directory is gone.
var ErrStopped = errors.New("localkafka: broker stopped")

// Options tune [Start]. The zero value works.
type Options struct {
	// Home is the directory whose libs subdirectory holds Kafka's jars.
	// Defaults to the result of [FindHome].
	Home string
	// Port is the PLAINTEXT listener's port, the one [Server.URL] names.
	// Defaults to a free port below 32768 (see [FreePort]).
	Port int
	// ControllerPort is the CONTROLLER listener's port. Defaults to a free
	// port below 32768.
	ControllerPort int
	// Heap is the JVM heap, as for -Xmx. Defaults to [HeapDefault] (512m).
	Heap string
	// Settings are extra server.properties settings (name → value); they
	// override the defaults.
	Settings map[string]string
	// StartTimeout bounds the wait until the broker answers, for [Start]
	// and for [Server.Restart]. Defaults to [StartTimeoutDefault] (2m): a
	// broker needs about 4s on an idle 2-core machine.
	StartTimeout time.Duration
}

// Server is a running throwaway Kafka broker.
type Server struct {
	dir     string
	java    string
	home    string
	heap    string
	timeout time.Duration
	port    int
	ctlPort int

	mu      sync.Mutex
	proc    *localproc.Process // nil while killed
	stopped bool
	stopErr error
}

// FindHome returns the directory holding Kafka's jars in libs: the one
// named by STRATA_KAFKA_HOME, or where scripts/ensure-kafka.sh puts version
// [Version]. It returns [ErrNotInstalled] when there is none.
func FindHome() (string, error) {
	home := localproc.FindHome("STRATA_KAFKA_HOME", "STRATA_KAFKA_DIR", "STRATA_KAFKA_VERSION", "kafka", Version, func(d string) bool {
		jars, _ := filepath.Glob(filepath.Join(d, "libs", "kafka_2.13-*.jar"))
		return len(jars) > 0
	})
	if home == "" {
		return "", ErrNotInstalled
	}
	return home, nil
}

// javaBin returns the java to run the broker with: JAVA_HOME's, else the
// one on PATH.
func javaBin() (string, error) {
	if h := os.Getenv("JAVA_HOME"); h != "" {
		return filepath.Join(h, "bin", "java"), nil
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("localkafka: no java on PATH and no JAVA_HOME: Kafka 4 needs Java 17 or later")
	}
	return p, nil
}

// FreePort returns a loopback TCP port below 32768 that was free a moment
// ago: one of 20000-31999, tried at random. Ports there are not handed out
// to outgoing connections (Linux's ephemeral range starts at 32768), so a
// broker that is killed and restarted finds its port still free.
func FreePort() (int, error) {
	var lastErr error
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(12000))
		if err != nil {
			return 0, err
		}
		port := 20000 + int(n.Int64())
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			lastErr = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port in 20000-31999 after 50 tries: %w", lastErr)
}

// clusterID returns a random cluster ID as Kafka writes them: 16 bytes in
// unpadded URL-safe base64. Like Kafka's own Uuid.randomUuid, it never
// starts with "-", which the storage tool's command line would take for an
// option.
func clusterID() string {
	for {
		var b [16]byte
		rand.Read(b[:])
		b[6] = b[6]&0x0f | 0x40 // a version 4 UUID
		b[8] = b[8]&0x3f | 0x80
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

// Start configures a broker in a temporary directory, formats its storage,
// starts it and waits until it answers an ApiVersions request (see
// [Ready]).
func Start(ctx context.Context, opts Options) (*Server, error) {
	home := opts.Home
	if home == "" {
		var err error
		if home, err = FindHome(); err != nil {
			return nil, err
		}
	}
	java, err := javaBin()
	if err != nil {
		return nil, err
	}
	timeout := cmp.Or(opts.StartTimeout, StartTimeoutDefault)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// A free port may be taken before the broker binds it: try again, with
	// new ports, unless the caller chose them.
	tries := 3
	if opts.Port != 0 && opts.ControllerPort != 0 {
		tries = 1
	}
	return localproc.Retry(ctx, tries, func() (*Server, error) {
		s := &Server{java: java, home: home, heap: cmp.Or(opts.Heap, HeapDefault), timeout: timeout,
			port: opts.Port, ctlPort: opts.ControllerPort}
		var err1, err2 error
		if s.port == 0 {
			s.port, err1 = FreePort()
		}
		if s.ctlPort == 0 {
			s.ctlPort, err2 = FreePort()
			for err2 == nil && s.ctlPort == s.port {
				s.ctlPort, err2 = FreePort()
			}
		}
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("localkafka: find a free port: %w", err)
		}
		if err := s.portsFree(); err != nil {
			return nil, err // before formatting, which takes seconds
		}
		dir, err := os.MkdirTemp("", "localkafka-")
		if err != nil {
			return nil, fmt.Errorf("localkafka: %w", err)
		}
		s.dir = dir
		if err := s.configure(ctx, opts.Settings); err != nil {
			os.RemoveAll(s.dir)
			return nil, err
		}
		if err := s.launch(ctx); err != nil {
			os.RemoveAll(s.dir)
			return nil, err
		}
		return s, nil
	})
}

// log4j2Config keeps the broker's log to warnings, plus the line that says
// it started, in kafka.log of its directory.
const log4j2Config = `status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = %s
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%%d] %%p %%m (%%c)%%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
`

// configure writes server.properties and the log configuration, and
// formats the broker's storage with a new cluster ID.
func (s *Server) configure(ctx context.Context, extra map[string]string) error {
	listen := fmt.Sprintf("127.0.0.1:%d", s.port)
	controller := fmt.Sprintf("127.0.0.1:%d", s.ctlPort)
	settings := map[string]string{
		"process.roles":                                    "broker,controller",
		"node.id":                                          "1",
		"listeners":                                        "PLAINTEXT://" + listen + ",CONTROLLER://" + controller,
		"advertised.listeners":                             "PLAINTEXT://" + listen,
		"controller.listener.names":                        "CONTROLLER",
		"inter.broker.listener.name":                       "PLAINTEXT",
		"listener.security.protocol.map":                   "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
		"controller.quorum.bootstrap.servers":              controller,
		"log.dirs":                                         filepath.Join(s.dir, "data"),
		"num.partitions":                                   "1",
		"default.replication.factor":                       "1",
		"auto.create.topics.enable":                        "false",
		"offsets.topic.replication.factor":                 "1",
		"transaction.state.log.replication.factor":         "1",
		"transaction.state.log.min.isr":                    "1",
		"share.coordinator.state.topic.replication.factor": "1",
		"share.coordinator.state.topic.min.isr":            "1",
		"group.initial.rebalance.delay.ms":                 "0",
		// A broker restarted after a kill registers again only once the
		// controller has given up on the killed one: 3s instead of the
		// default 9s (measured: a restart ready in 14s became 6s).
		"broker.session.timeout.ms":    "3000",
		"broker.heartbeat.interval.ms": "500",
		// Fewer partitions for the internal topics than the default 50: one
		// broker gains nothing from them, and creating 50 costs seconds at
		// a test's first group or transaction.
		"offsets.topic.num.partitions":         "4",
		"transaction.state.log.num.partitions": "4",
	}
	for k, v := range extra {
		settings[k] = v
	}
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range settings {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s=%s\n", k, settings[k])
	}
	if err := os.WriteFile(s.propsPath(), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("localkafka: write config: %w", err)
	}
	logConf := fmt.Sprintf(log4j2Config, filepath.Join(s.dir, "kafka.log"))
	if err := os.WriteFile(filepath.Join(s.dir, "log4j2.properties"), []byte(logConf), 0o644); err != nil {
		return fmt.Errorf("localkafka: write config: %w", err)
	}
	// --standalone makes this node the one voter of the metadata quorum.
	cmd := exec.CommandContext(ctx, s.java, append(s.jvmArgs("256m"), "kafka.tools.StorageTool",
		"format", "-t", clusterID(), "-c", s.propsPath(), "--standalone")...)
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("localkafka: format storage: %w\n%s", err, localproc.LastLines(out, 30))
	}
	return nil
}

// portsFree returns an error that wraps [localproc.ErrPortTaken] when
// another process listens on one of the broker's ports: it would answer
// for the broker.
func (s *Server) portsFree() error {
	for _, port := range []int{s.port, s.ctlPort} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("localkafka: 127.0.0.1:%d: %w", port, localproc.ErrPortTaken)
		}
		l.Close()
	}
	return nil
}

func (s *Server) propsPath() string { return filepath.Join(s.dir, "server.properties") }

// jvmArgs are java's arguments up to the main class.
func (s *Server) jvmArgs(heap string) []string {
	return []string{
		"-Xmx" + heap, "-XX:ActiveProcessorCount=2", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(s.dir, "log4j2.properties"),
		"-cp", filepath.Join(s.home, "libs", "*"),
	}
}

// launch starts the broker on the configured directory and waits until it
// answers. The caller holds s.mu or owns s alone.
func (s *Server) launch(ctx context.Context) error {
	if err := s.portsFree(); err != nil {
		return err
	}
	outPath := filepath.Join(s.dir, "kafka.out")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("localkafka: %w", err)
	}
	defer out.Close()
	if err := os.Truncate(filepath.Join(s.dir, "kafka.log"), 0); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("localkafka: %w", err)
	}
	cmd := exec.Command(s.java, append(s.jvmArgs(s.heap), "kafka.Kafka", s.propsPath())...)
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	proc, err := localproc.Start(cmd, nil, syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("localkafka: start kafka: %w", err)
	}
	if err := s.waitReady(ctx, proc); err != nil {
		proc.Stop(syscall.SIGTERM, StopTimeoutDefault)
		logs, _ := os.ReadFile(filepath.Join(s.dir, "kafka.log"))
		stdout, _ := os.ReadFile(outPath)
		logs = append(logs, stdout...)
		if bytes.Contains(logs, []byte("BindException")) || bytes.Contains(logs, []byte("Address already in use")) {
			return fmt.Errorf("localkafka: 127.0.0.1:%d or :%d: %w", s.port, s.ctlPort, localproc.ErrPortTaken)
		}
		return fmt.Errorf("localkafka: %w\n%s", err, localproc.LastLines(logs, 30))
	}
	s.proc = proc
	return nil
}

// startedLine is what the broker logs once it serves; kafka.log holds its
// lines since the last (re)start.
const startedLine = "Kafka Server started"

// waitReady waits until this broker's log says it started and its port
// answers an ApiVersions request, the process exits or ctx ends.
func (s *Server) waitReady(ctx context.Context, proc *localproc.Process) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastErr := errors.New("no " + startedLine + " in kafka.log")
	for {
		if log, _ := os.ReadFile(filepath.Join(s.dir, "kafka.log")); bytes.Contains(log, []byte(startedLine)) {
			if lastErr = Ready(ctx, s.URL()); lastErr == nil {
				return nil
			}
		}
		select {
		case <-proc.Exited():
			return fmt.Errorf("kafka exited before it was ready: %v", proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("kafka was not ready in time: %w", lastErr)
		case <-tick.C:
		}
	}
}

// Ready reports nil when the broker at addr (host:port) answers an
// ApiVersions request without an error. A broker's listener opens only
// once the broker has started.
func Ready(ctx context.Context, addr string) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(cctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := cctx.Deadline(); ok {
		_ = conn.SetDeadline(dl) // fails only on a closed connection
	}
	// ApiVersions v0: size, api key 18, version 0, correlation ID, client ID.
	const clientID = "localkafka"
	req := binary.BigEndian.AppendUint32(nil, uint32(2+2+4+2+len(clientID)))
	req = binary.BigEndian.AppendUint16(req, 18)
	req = binary.BigEndian.AppendUint16(req, 0)
	req = binary.BigEndian.AppendUint32(req, 7)
	req = binary.BigEndian.AppendUint16(req, uint16(len(clientID)))
	req = append(req, clientID...)
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("send ApiVersions: %w", err)
	}
	// The answer: size, correlation ID, error code, then the API list.
	r := bufio.NewReader(conn)
	var head [10]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return fmt.Errorf("read ApiVersions response: %w", err)
	}
	if id := binary.BigEndian.Uint32(head[4:8]); id != 7 {
		return fmt.Errorf("ApiVersions response: correlation ID %d, want 7", id)
	}
	if code := int16(binary.BigEndian.Uint16(head[8:10])); code != 0 {
		return fmt.Errorf("ApiVersions response: error code %d", code)
	}
	return nil
}

// URL returns the broker's bootstrap address, like 127.0.0.1:29092.
func (s *Server) URL() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Port returns the PLAINTEXT listener's port.
func (s *Server) Port() int { return s.port }

// Dir returns the temporary directory holding the broker's config, data
// and logs (kafka.log).
func (s *Server) Dir() string { return s.dir }

// PID returns the broker process's ID, or 0 while it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// Kill ends the broker with SIGKILL, as a crash would, and waits until it
// has exited. Its directory stays, for [Server.Restart]. Killing a broker
// that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Stop(syscall.SIGKILL, StopTimeoutDefault)
		s.proc = nil
	}
}

// Restart starts the broker again on the same ports and data directory, so
// that its topics and committed transactions survive, and waits until it
// answers. A running broker is shut down first. After [Server.Stop] it
// returns [ErrStopped].
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if s.proc != nil {
		s.proc.Stop(syscall.SIGTERM, StopTimeoutDefault)
		s.proc = nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.launch(ctx)
}

// Stop shuts the broker down (SIGTERM, then SIGKILL after 20s) and removes
// its directory. It is safe to call more than once, and after
// [Server.Kill].
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return s.stopErr
	}
	s.stopped = true
	if s.proc != nil {
		s.proc.Stop(syscall.SIGTERM, StopTimeoutDefault)
		s.proc = nil
	}
	s.stopErr = os.RemoveAll(s.dir)
	return s.stopErr
}
