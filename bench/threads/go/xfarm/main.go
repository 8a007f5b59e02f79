// xfarm: the twin of bench/threads/xfarm.lua: the same JOBS jobs (the same loop of WORK steps,
// XFARM_WORK as there; Go runs a step in ~2.7 ns, Lua in ~5.9: both pay a 64-bit division),
// GOMAXPROCS workers draining a cap 1024 jobs channel and sending results on another; jobs/s.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

//go:noinline
func job(n int) int {
	s := 0
	for i := 1; i <= n; i++ {
		s += i % 7
	}
	return s
}

func main() {
	jobsN, work := 200000, 1200
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		jobsN /= 10
	}
	if w, err := strconv.Atoi(os.Getenv("XFARM_WORK")); err == nil {
		work = w
	}
	procs := runtime.GOMAXPROCS(0)
	jobs, results := make(chan int, 1024), make(chan int, 1024)
	go func() {
		for j := 0; j < jobsN; j++ {
			jobs <- work
		}
		close(jobs)
	}()
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < procs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				results <- job(n)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	count, sum := 0, 0
	for r := range results {
		count, sum = count+1, sum+r
	}
	dt := time.Since(t0).Seconds()
	if count != jobsN || sum == 0 {
		panic("lost jobs")
	}
	fmt.Printf("RESULT xfarm %.0f jobs/s (%d procs, %.1f us/job/proc)\n", float64(jobsN)/dt, procs,
		dt*1e6/float64(jobsN)*float64(procs))
}
