// The Go twin of bench/tls/conns.lua: N sequential https GETs, each on a new connection
// (HTTP/1.1, keep-alives off), verified against the system roots ($SSL_CERT_FILE).
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
)

func cpuMs() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}

func main() {
	url := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1
	}}
	c0, t0 := cpuMs(), time.Now()
	for i := 0; i < n; i++ {
		resp, err := client.Get(url)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			panic(resp.Status)
		}
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT tls_conn %.3f ms/req\n", float64(dt.Nanoseconds())/1e6/float64(n))
	fmt.Printf("RESULT tls_conn_cpu %.3f ms/req\n", (cpuMs()-c0)/float64(n))
}
