//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

const segBytes = 16 << 20

// lagSampler reads, per application_name, server current LSN − flush LSN
// from pg_stat_replication.
type lagSampler struct {
	conn *pgconn.PgConn
}

func (s lagSampler) sample(ctx context.Context) (map[string]int64, error) {
	res, err := s.conn.Exec(ctx, "SELECT application_name, (pg_current_wal_lsn() - coalesce(flush_lsn, '0/0'))::bigint FROM pg_stat_replication").ReadAll()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, r := range res {
		for _, row := range r.Rows {
			n, _ := strconv.ParseInt(string(row[1]), 10, 64)
			out[string(row[0])] = n
		}
	}
	return out, nil
}

// stopProc interrupts a streaming process and waits for it.
func stopProc(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// TestPeerReceiveWAL: scenario 2, cellar receive-wal and pg_receivewal
// stream the same pgbench load at the same time into separate directories
// through separate slots; lag is sampled every second.
func TestPeerReceiveWAL(t *testing.T) {
	dur := envInt(t, "CELLAR_BENCH_STREAM_SECONDS", 60)
	scale := envInt(t, "CELLAR_BENCH_STREAM_SCALE", 100)
	c := pgtest.Start(t, pgtest.Options{ExtraConf: []string{"max_wal_size = 2GB", "checkpoint_timeout = 30min"}})
	c.Pgbench(t, "-i", "-s", strconv.Itoa(scale), "-q")

	root := benchDir(t, "cellar-bench-receive")
	ce := newCellarEnv(t, root, c.TCPConnString(), map[string][]string{
		"rw": {"archiver: false", "streaming_archiver: true", "slot_name: cellar_bench", "create_slot: auto", "streaming_archiver_name: cellar_receive_wal"},
	})
	if out, err := ce.cmd("receive-wal", "--create-slot", "--if-not-exists", "rw").CombinedOutput(); err != nil {
		t.Fatalf("cellar receive-wal --create-slot: %v\n%s", err, out)
	}
	pgDir := c.MkdirForPostgres(t)
	c.RunAsPostgres(t, "pg_receivewal", "-S", "pgrw_bench", "--create-slot")

	var cellarLog, pgLog strings.Builder
	cr := ce.cmd("receive-wal", "rw")
	cr.Stdout, cr.Stderr = &cellarLog, &cellarLog
	pr := c.Command("pg_receivewal", "-D", pgDir, "-S", "pgrw_bench", "-n")
	pr.Stdout, pr.Stderr = &pgLog, &pgLog
	if err := cr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProc(cr) })
	if err := pr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProc(pr) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(dur+300)*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, c.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ls := lagSampler{conn: conn}
	const cellarApp, pgApp = "cellar_receive_wal", "pg_receivewal"
	deadline := time.Now().Add(30 * time.Second)
	for {
		lags, err := ls.sample(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, okC := lags[cellarApp]
		_, okP := lags[pgApp]
		if okC && okP {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streamers not connected after 30 s (pg_stat_replication: %v)\ncellar log:\n%s\npg_receivewal log:\n%s", lags, tail(cellarLog.String(), 2000), tail(pgLog.String(), 2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	startLSN := c.QueryRow(t, "SELECT pg_current_wal_lsn()")
	cpuC0, cpuP0 := procCPU(cr.Process.Pid), procCPU(pr.Process.Pid)

	bench := c.Command("pgbench", "-c", "4", "-j", "2", "-T", strconv.Itoa(dur), "-n")
	var benchOut strings.Builder
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()

	var cLags, pLags []int64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-benchDone:
			if err != nil {
				t.Fatalf("pgbench: %v\n%s", err, benchOut.String())
			}
			break loop
		case <-tick.C:
			lags, err := ls.sample(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lc, okC := lags[cellarApp]
			lp, okP := lags[pgApp]
			if !okC {
				t.Fatalf("cellar receive-wal disconnected during the run\n%s", tail(cellarLog.String(), 3000))
			}
			if !okP {
				t.Fatalf("pg_receivewal disconnected during the run\n%s", tail(pgLog.String(), 3000))
			}
			cLags, pLags = append(cLags, lc), append(pLags, lp)
		}
	}
	cpuC, cpuP := procCPU(cr.Process.Pid)-cpuC0, procCPU(pr.Process.Pid)-cpuP0
	endLSN := c.QueryRow(t, "SELECT pg_current_wal_lsn()")
	walBytes := c.QueryRow(t, fmt.Sprintf("SELECT pg_wal_lsn_diff('%s', '%s')::bigint", endLSN, startLSN))
	wb, _ := strconv.ParseInt(walBytes, 10, 64)

	// Let both catch up, then compare what they wrote.
	time.Sleep(3 * time.Second)
	stopProc(cr)
	stopProc(pr)
	cSegs, _ := countFiles(t, filepath.Join(ce.serverDir("rw"), "streaming"))
	pSegs, _ := countFiles(t, pgDir)

	tps := ""
	for _, line := range strings.Split(benchOut.String(), "\n") {
		if strings.HasPrefix(line, "tps") {
			tps = line
		}
	}
	stats := func(l []int64) (maxv int64, med int64, firstHalf, secondHalf float64) {
		if len(l) == 0 {
			return
		}
		s := append([]int64(nil), l...)
		for _, v := range s {
			maxv = max(maxv, v)
		}
		sorted := append([]int64(nil), l...)
		for i := range sorted {
			for j := i + 1; j < len(sorted); j++ {
				if sorted[j] < sorted[i] {
					sorted[i], sorted[j] = sorted[j], sorted[i]
				}
			}
		}
		med = sorted[len(sorted)/2]
		h := len(l) / 2
		var a, b float64
		for i, v := range l {
			if i < h {
				a += float64(v)
			} else {
				b += float64(v)
			}
		}
		if h > 0 {
			firstHalf, secondHalf = a/float64(h), b/float64(len(l)-h)
		}
		return
	}
	cm, cmed, c1, c2 := stats(cLags)
	pm, pmed, p1, p2 := stats(pLags)
	verdict := "MET"
	if cm >= segBytes || c2 > 2*c1+segBytes/4 {
		verdict = "MISSED"
	}
	emit(t, fmt.Sprintf("receive-wal under pgbench -c 4 -j 2 -T %d (scale %d): %.1f MiB WAL (%.2f MiB/s), %s", dur, scale, float64(wb)/(1<<20), float64(wb)/(1<<20)/float64(dur), tps))
	emit(t, fmt.Sprintf("receive-wal max lag: cellar %.2f MiB (%.3f segments), pg_receivewal %.2f MiB (%.3f segments) (target: cellar < 1 segment, not growing) %s [median lag cellar %.2f MiB, pg_receivewal %.2f MiB; mean lag 1st/2nd half cellar %.2f/%.2f MiB, pg_receivewal %.2f/%.2f MiB; %d samples]",
		mib(cm), float64(cm)/segBytes, mib(pm), float64(pm)/segBytes, verdict, mib(cmed), mib(pmed), c1/(1<<20), c2/(1<<20), p1/(1<<20), p2/(1<<20), len(cLags)))
	emit(t, fmt.Sprintf("receive-wal CPU user+sys during the run: cellar %.2f s, pg_receivewal %.2f s, ratio %.2f; segments written cellar %d, pg_receivewal %d",
		cpuC.Seconds(), cpuP.Seconds(), cpuC.Seconds()/cpuP.Seconds(), cSegs, pSegs))
	if cSegs == 0 {
		t.Fatalf("cellar receive-wal wrote no complete segment\n%s", tail(cellarLog.String(), 3000))
	}
	if diff := cSegs - pSegs; diff < -1 || diff > 1 {
		t.Errorf("cellar wrote %d segments, pg_receivewal %d", cSegs, pSegs)
	}
	c.Exec(t, "SELECT pg_drop_replication_slot('pgrw_bench')")
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
