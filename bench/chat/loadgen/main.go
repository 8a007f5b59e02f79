// loadgen: the chat fan-out load. -c clients connect and read everything; -s of them talk, each
// sending a line and waiting until its own copy comes back before the next (closed loop). Counts
// the lines all clients receive during -d: deliveries/s. With -pid, also the server's CPU time.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func serverCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "server address")
	clients := flag.Int("c", 200, "clients")
	talkers := flag.Int("s", 10, "clients that talk")
	dur := flag.Duration("d", 5*time.Second, "measured duration")
	pid := flag.Int("pid", 0, "server pid, for its CPU time")
	flag.Parse()

	var delivered, measuring, stop int64
	conns := make([]net.Conn, *clients)
	readers := make([]*bufio.Reader, *clients)
	for i := range conns {
		c, err := net.Dial("tcp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			os.Exit(1)
		}
		conns[i], readers[i] = c, bufio.NewReader(c)
		if _, err := readers[i].ReadString('\n'); err != nil { // "You are ..."
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(1)
		}
	}
	time.Sleep(200 * time.Millisecond) // every arrival announced
	var wg sync.WaitGroup
	for i := range conns {
		i := i
		echo := make(chan struct{}, 1)
		me := conns[i].LocalAddr().String() + ": "
		wg.Add(1)
		go func() { // reader
			defer wg.Done()
			for {
				line, err := readers[i].ReadString('\n')
				if err != nil {
					return
				}
				if atomic.LoadInt64(&measuring) == 1 {
					atomic.AddInt64(&delivered, 1)
				}
				if strings.HasPrefix(line, me) {
					echo <- struct{}{}
				}
			}
		}()
		if i < *talkers {
			go func() { // talker
				msg := []byte("hello everybody, this is a chat line\n")
				for atomic.LoadInt64(&stop) == 0 {
					if _, err := conns[i].Write(msg); err != nil {
						return
					}
					select {
					case <-echo:
					case <-time.After(10 * time.Second):
						fmt.Fprintln(os.Stderr, "no echo in 10 s")
						os.Exit(1)
					}
				}
			}()
		}
	}
	time.Sleep(500 * time.Millisecond) // warm-up
	atomic.StoreInt64(&measuring, 1)
	cpu0, t0 := serverCPU(*pid), time.Now()
	time.Sleep(*dur)
	atomic.StoreInt64(&measuring, 0)
	cpu1, elapsed := serverCPU(*pid), time.Since(t0)
	atomic.StoreInt64(&stop, 1)
	n := atomic.LoadInt64(&delivered)
	fmt.Printf("RESULT chat-deliveries %.0f lines/s\n", float64(n)/elapsed.Seconds())
	if *pid != 0 && n > 0 {
		fmt.Printf("RESULT chat-cpu %.2f us/delivery\n", float64((cpu1-cpu0).Nanoseconds())/1e3/float64(n))
	}
	for _, c := range conns {
		c.Close()
	}
}
