// Go twin of bench/http/get.lua: net/http GETs of a 1 KB page over keep-alive.
// usage: goget URL [N]
// seq: N sequential gets on one keep-alive connection; par8: 8 goroutines each doing N/8 gets;
// par8u: the same with a distinct URL per request (URL?i=K).
// The transport keeps up to 4 idle connections per host, as csp.http's pool does (Go's default
// of 2 would make par8 open and close connections csp keeps). Every response must be 200 with a
// 1024-byte body. Prints requests/s and process CPU time (user+sys, getrusage) per request.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const par = 8

var client *http.Client

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func get(url string) {
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "get:", err)
		os.Exit(1)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(body) != 1024 {
		fmt.Fprintf(os.Stderr, "get: status %d, body %d bytes, err %v\n", resp.StatusCode, len(body), err)
		os.Exit(1)
	}
}

func measure(name string, n int, f func()) {
	c0, t0 := cpu(), time.Now()
	f()
	c1, t1 := cpu(), time.Now()
	fmt.Printf("RESULT http_%s %.0f req/s\n", name, float64(n)/t1.Sub(t0).Seconds())
	fmt.Printf("RESULT http_%s_cpu %.2f us/req\n", name, float64((c1-c0).Microseconds())/float64(n))
}

func main() {
	url := os.Args[1]
	n := 20000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n = 2000
	}
	if len(os.Args) > 2 {
		n, _ = strconv.Atoi(os.Args[2])
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	client = &http.Client{Transport: tr}

	get(url) // warm-up: opens the connection the sequential run reuses
	measure("seq", n, func() {
		for i := 0; i < n; i++ {
			get(url)
		}
	})
	par8 := func(name string, distinct bool) {
		measure(name, n, func() {
			var wg sync.WaitGroup
			for g := 0; g < par; g++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 1; i <= n/par; i++ {
						if distinct {
							get(fmt.Sprintf("%s?i=%d", url, w*n+i))
						} else {
							get(url)
						}
					}
				}(g + 1)
			}
			wg.Wait()
		})
	}
	par8("par8", false)
	par8("par8u", true)
	tr.CloseIdleConnections()
}
