// exec: the Go twin of bench/exec.lua: mean latency of exec.Command("true").Run() at a chosen
// RSS, and the longest gap of a 1 ms ticker while 100 commands start at once.
// Usage: exec [rss_mb] [n].
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

func main() {
	rssMB, n := 0, 200
	if len(os.Args) > 1 {
		rssMB, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		n, _ = strconv.Atoi(os.Args[2])
	}
	ballast := bytes.Repeat([]byte{'x'}, rssMB<<20) // touched: resident
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := exec.Command("true").Run(); err != nil {
			panic(err)
		}
	}
	seq := float64(time.Since(t0).Microseconds()) / 1e3 / float64(n)

	stop, done := make(chan struct{}), make(chan time.Duration)
	go func() {
		last, maxgap := time.Now(), time.Duration(0)
		for {
			select {
			case <-stop:
				done <- maxgap
				return
			case <-time.After(time.Millisecond):
			}
			if d := time.Since(last); d > maxgap {
				maxgap = d
			}
			last = time.Now()
		}
	}()
	var wg sync.WaitGroup
	t0 = time.Now()
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := exec.Command("true").Run(); err != nil {
				panic(err)
			}
		}()
	}
	wg.Wait()
	conc := time.Since(t0)
	close(stop)
	maxgap := <-done
	fmt.Printf("RESULT exec_seq_rss%d %.3f ms/exec\n", rssMB, seq)
	fmt.Printf("RESULT exec_100_rss%d %.1f ms wall, ticker max gap %.1f ms\n", rssMB,
		float64(conc.Microseconds())/1e3, float64(maxgap.Microseconds())/1e3)
	if len(ballast) != rssMB<<20 {
		panic("ballast")
	}
}
