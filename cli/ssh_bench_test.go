package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// sshBenchRuns is how many times each command runs per benchmark iteration.
const sshBenchRuns = 20

// percentiles returns the p50 and p90 of durations.
func percentiles(d []time.Duration) (p50, p90 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration { return s[int(p*float64(len(s)-1)+0.5)] }
	return at(0.5), at(0.9)
}

// timeRuns runs the command built by mk sshBenchRuns times and reports
// p50/p90 wall time in milliseconds under name.
func timeRuns(b *testing.B, name string, mk func() *exec.Cmd) {
	b.Helper()
	var all []time.Duration
	for i := 0; i < b.N; i++ {
		for j := 0; j < sshBenchRuns; j++ {
			cmd := mk()
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("%s: %v\n%s", name, err, out.String())
			}
			all = append(all, time.Since(start))
		}
	}
	p50, p90 := percentiles(all)
	b.ReportMetric(float64(p50.Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(p90.Microseconds())/1000, name+"-p90-ms")
}

func buildCoderB(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "coder")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/coder")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build coder: %v\n%s", err, out)
	}
	return bin
}

// BenchmarkSSHTrue measures `coder ssh WS -- true` (a fresh process each
// time: config, API lookup, tunnel, coordinator, SSH) against
// `ssh 127.0.0.1 true` to a private OpenSSH sshd on the same machine.
func BenchmarkSSHTrue(b *testing.B) {
	bin := buildCoderB(b)
	e := newReachEnv(b)
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token)
	e.waitConnected(agentID)
	b.ResetTimer()
	timeRuns(b, "coder-ssh", func() *exec.Cmd {
		cmd := exec.Command(bin, "--global-config", e.cfgDir, "ssh", "ws1", "--", "true")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home}
		return cmd
	})
	b.StopTimer()

	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		b.Logf("no sshd on this machine: OpenSSH baseline not measured")
		return
	}
	port, stop := startPrivateSSHD(b, sshd)
	defer stop()
	dir := filepath.Dir(port.key)
	b.StartTimer()
	timeRuns(b, "openssh", func() *exec.Cmd {
		cmd := exec.Command("ssh", "-p", strconv.Itoa(port.port), "-i", port.key, "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "GSSAPIAuthentication=no", "127.0.0.1", "true")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		return cmd
	})
}

type sshdInfo struct {
	port int
	key  string
}

// startPrivateSSHD runs sshd on a random loopback port with a temporary
// host key, accepting a temporary client key for the current user.
func startPrivateSSHD(b *testing.B, sshd string) (sshdInfo, func()) {
	b.Helper()
	dir := b.TempDir()
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	hostKey := filepath.Join(dir, "host_key")
	clientKey := filepath.Join(dir, "client_key")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", clientKey)
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	u, err := user.Current()
	if err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPasswordAuthentication no\n"+
		"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile %s\nAllowUsers %s\nPermitRootLogin prohibit-password\nUseDNS no\n",
		port, hostKey, auth, filepath.Join(dir, "sshd.pid"), u.Username)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root needs its privilege separation directory
		// (systemd creates it as RuntimeDirectory).
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			b.Fatalf("create /run/sshd: %v", err)
		}
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			b.Fatalf("sshd did not listen: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return sshdInfo{port: port, key: clientKey}, func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// BenchmarkSpeedtest reports `coder speedtest` throughput in both
// directions through the tunnel to an in-process agent on loopback.
func BenchmarkSpeedtest(b *testing.B) {
	bin := buildCoderB(b)
	e := newReachEnv(b)
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token)
	e.waitConnected(agentID)
	b.ResetTimer()
	for _, dir := range []string{"down", "up"} {
		var total float64
		for i := 0; i < b.N; i++ {
			cmd := exec.Command(bin, "--global-config", e.cfgDir, "speedtest", "ws1", "-t", "5s", "--direction", dir, "-o", "json")
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home}
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("speedtest: %v", err)
			}
			var res struct {
				Total struct {
					End   time.Duration `json:"end"`
					Bytes int64         `json:"bytes"`
				} `json:"total"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				b.Fatal(err)
			}
			total += float64(res.Total.Bytes) * 8 / res.Total.End.Seconds() / 1e6
		}
		b.ReportMetric(total/float64(b.N), "Mbit/s-"+dir)
	}
}
