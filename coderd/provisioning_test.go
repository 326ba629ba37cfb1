package coderd_test

import (
	"archive/tar"
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/provisionerdserver"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

func provTestTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "output \"x\" { value = 1 }\n"
	if err := tw.WriteHeader(&tar.Header{Name: "main.tf", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func provWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProvisionerDaemonProtocol speaks the daemon protocol directly: PSK
// authentication, tag matching, logs, cancelation and the heartbeat lapse
// that fails a job whose daemon died.
func TestProvisionerDaemonProtocol(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const psk = "protocol-psk"
	client, _ := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Provisioning: coderd.ProvisioningOptions{
		PSK: psk, HeartbeatTimeout: 2 * time.Second, AcquireWait: 500 * time.Millisecond,
	}}})
	coderdtest.CreateFirstUser(t, client)
	member, _ := coderdtest.CreateAnotherUser(t, client)

	// Members may not upload templates.
	if _, err := member.Upload(ctx, codersdk.ContentTypeTar, bytes.NewReader(provTestTar(t))); err == nil {
		t.Fatal("member upload succeeded")
	}

	daemon := &provisionersdk.Client{URL: client.URL, PSK: psk}
	wrong := &provisionersdk.Client{URL: client.URL, PSK: "nope"}
	if _, err := wrong.Register(ctx, provisionersdk.RegisterRequest{Name: "x"}); err == nil {
		t.Fatal("register with a wrong PSK succeeded")
	} else if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusUnauthorized {
		t.Fatalf("wrong PSK: %v", err)
	}
	reg, err := daemon.Register(ctx, provisionersdk.RegisterRequest{Name: "proto", Tags: map[string]string{"pool": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Tags["scope"] != "organization" || reg.Tags["pool"] != "a" {
		t.Fatalf("effective tags %v", reg.Tags)
	}

	queue := func(tags map[string]string) codersdk.TemplateVersion {
		up, err := client.Upload(ctx, codersdk.ContentTypeTar, bytes.NewReader(provTestTar(t)))
		if err != nil {
			t.Fatal(err)
		}
		v, err := client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{FileID: up.ID, ProvisionerTags: tags})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	other := queue(map[string]string{"pool": "b"})
	mine := queue(map[string]string{"pool": "a"})

	job, err := daemon.AcquireJob(ctx, reg.ID)
	if err != nil || job == nil || job.JobID != mine.Job.ID || job.TemplateImport == nil || len(job.TemplateSourceArchive) == 0 {
		t.Fatalf("acquire = %+v, %v; want the pool=a job", job, err)
	}
	if job, err := daemon.AcquireJob(ctx, reg.ID); err != nil || job != nil {
		t.Fatalf("second acquire = %+v, %v; want none (pool=b needs another daemon)", job, err)
	}
	v, err := client.TemplateVersion(ctx, other.ID)
	if err != nil || v.Job.Status != codersdk.ProvisionerJobPending || !strings.Contains(v.Job.Detail, "no provisioner daemon with tags {pool=b, scope=organization}") {
		t.Fatalf("unmatched job: %+v %v", v.Job, err)
	}

	if err := daemon.SendLogs(ctx, reg.ID, provisionersdk.LogsRequest{JobID: mine.Job.ID, Logs: []provisionersdk.Log{
		{Level: codersdk.LogLevelInfo, Stage: "Planning", Output: "hello"},
	}}); err != nil {
		t.Fatal(err)
	}
	logs, closer, err := client.TemplateVersionLogsAfter(ctx, mine.ID, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	closer.Close()
	if l := <-logs; l.Output != "hello" || l.Stage != "Planning" {
		t.Fatalf("log = %+v", l)
	}
	hb, err := daemon.Heartbeat(ctx, reg.ID, mine.Job.ID)
	if err != nil || hb.Canceled {
		t.Fatalf("heartbeat = %+v, %v", hb, err)
	}
	// Cancel: the next heartbeat tells the daemon.
	if err := client.CancelTemplateVersion(ctx, mine.ID); err != nil {
		t.Fatal(err)
	}
	if v, _ := client.TemplateVersion(ctx, mine.ID); v.Job.Status != codersdk.ProvisionerJobCanceling {
		t.Fatalf("after cancel: %s", v.Job.Status)
	}
	if hb, err := daemon.Heartbeat(ctx, reg.ID, mine.Job.ID); err != nil || !hb.Canceled {
		t.Fatalf("heartbeat after cancel = %+v, %v", hb, err)
	}
	if err := daemon.FailJob(ctx, reg.ID, provisionersdk.FailedJob{JobID: mine.Job.ID, Error: "interrupted"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := client.TemplateVersion(ctx, mine.ID); v.Job.Status != codersdk.ProvisionerJobCanceled {
		t.Fatalf("after fail of a canceled job: %s", v.Job.Status)
	}

	// A daemon that acquires a job and dies: the job fails once its heartbeat lapses.
	third := queue(map[string]string{"pool": "a"})
	job, err = daemon.AcquireJob(ctx, reg.ID)
	if err != nil || job == nil || job.JobID != third.Job.ID {
		t.Fatalf("acquire third = %+v, %v", job, err)
	}
	provWait(t, "hung job failure", func() bool {
		v, err := client.TemplateVersion(ctx, third.ID)
		return err == nil && v.Job.Status == codersdk.ProvisionerJobFailed
	})
	v, _ = client.TemplateVersion(ctx, third.ID)
	if v.Job.Error != provisionerdserver.HungJobError {
		t.Fatalf("hung job error %q", v.Job.Error)
	}
	if _, err := daemon.Heartbeat(ctx, reg.ID, third.Job.ID); err == nil {
		t.Fatal("heartbeat of a failed job succeeded")
	}
}
