// loadgen: the TCP echo load generator. -c connections each send a -size byte line and wait
// for its echo (closed loop) for -d; prints requests/s, p50 and p99 latency and, given the
// server's -pid, the server's CPU time (user+sys from /proc) per request.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverCPU returns the process's user+sys time from /proc/PID/stat.
func serverCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "server address")
	conns := flag.Int("c", 100, "connections")
	size := flag.Int("size", 64, "line length, newline included")
	dur := flag.Duration("d", 5*time.Second, "measured duration")
	warm := flag.Duration("warmup", 500*time.Millisecond, "unmeasured warm-up")
	pid := flag.Int("pid", 0, "server pid, for its CPU time")
	name := flag.String("name", "echo", "label of the RESULT lines")
	flag.Parse()

	line := append(bytes.Repeat([]byte("x"), *size-1), '\n')
	var (
		mu        sync.Mutex
		lat       []time.Duration
		measuring bool
		stop      bool
		wg        sync.WaitGroup
	)
	for i := 0; i < *conns; i++ {
		c, err := net.Dial("tcp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			os.Exit(1)
		}
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			mine := make([]time.Duration, 0, 1<<16)
			for {
				mu.Lock()
				m, s := measuring, stop
				mu.Unlock()
				if s {
					break
				}
				t0 := time.Now()
				if _, err := c.Write(line); err != nil {
					fmt.Fprintln(os.Stderr, "write:", err)
					os.Exit(1)
				}
				got, err := r.ReadSlice('\n')
				if err != nil || len(got) != len(line) {
					fmt.Fprintln(os.Stderr, "read:", err, len(got))
					os.Exit(1)
				}
				if m {
					mine = append(mine, time.Since(t0))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(c)
	}
	time.Sleep(*warm)
	mu.Lock()
	measuring = true
	mu.Unlock()
	cpu0, t0 := serverCPU(*pid), time.Now()
	time.Sleep(*dur)
	mu.Lock()
	measuring = false
	mu.Unlock()
	cpu1, elapsed := serverCPU(*pid), time.Since(t0)
	mu.Lock()
	stop = true
	mu.Unlock()
	wg.Wait()

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	n := len(lat)
	if n == 0 {
		fmt.Fprintln(os.Stderr, "no requests completed")
		os.Exit(1)
	}
	fmt.Printf("RESULT %s-rps %.0f req/s\n", *name, float64(n)/elapsed.Seconds())
	fmt.Printf("RESULT %s-p50 %.1f us\n", *name, float64(lat[n/2].Nanoseconds())/1e3)
	fmt.Printf("RESULT %s-p99 %.1f us\n", *name, float64(lat[n*99/100].Nanoseconds())/1e3)
	if *pid != 0 {
		fmt.Printf("RESULT %s-cpu %.2f us/req\n", *name, float64((cpu1-cpu0).Nanoseconds())/1e3/float64(n))
	}
}
