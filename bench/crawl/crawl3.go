// crawl3: the Go twin of examples/crawl3.lua for bench/crawl/run.sh (gopl.io/ch8/crawl3 with
// the same additions: -depth by shortest path, -host, termination by counting pending lists,
// and links.Extract made to return what csp.html.links returns: <base href> honoured,
// fragments removed, only http(s) URLs, same-document references dropped).
// Built with Debian's golang-golang-x-net-dev: GO111MODULE=off GOPATH=/usr/share/gocode.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

var (
	maxDepth = flag.Int("depth", -1, "fetch only pages at most this many links from a start URL")
	host     = flag.String("host", "", "follow only links to this host (name or name:port)")
)

func extract(u string) ([]string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("getting %s: status %d", u, resp.StatusCode)
	}
	ct := resp.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/html") {
		return nil, fmt.Errorf("%s has type %s, not HTML", u, ct)
	}
	doc, err := html.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s as HTML: %v", u, err)
	}
	base := resp.Request.URL
	var hrefs []string
	baseSet := false
	var visit func(n *html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key != "href" {
					continue
				}
				if n.Data == "a" {
					hrefs = append(hrefs, a.Val)
				} else if n.Data == "base" && !baseSet {
					baseSet = true
					if b, err := base.Parse(strings.TrimSpace(a.Val)); err == nil {
						base = b
					}
				}
				break
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	visit(doc)
	var links []string
	for _, h := range hrefs {
		h = strings.TrimSpace(h)
		if h == "" || strings.HasPrefix(h, "#") {
			continue
		}
		link, err := base.Parse(h)
		if err != nil || (link.Scheme != "http" && link.Scheme != "https") || link.Host == "" {
			continue
		}
		link.Fragment, link.RawFragment = "", ""
		links = append(links, link.String())
	}
	return links, nil
}

func crawl(u string) []string {
	fmt.Println(u)
	list, err := extract(u)
	if err != nil {
		log.Print(err)
	}
	return list
}

func onHost(link string) bool {
	if *host == "" {
		return true
	}
	u, err := url.Parse(link)
	if err != nil {
		return false
	}
	if strings.Contains(*host, ":") && !strings.HasPrefix(*host, "[") {
		return u.Host == *host
	}
	return u.Hostname() == strings.Trim(*host, "[]")
}

type item struct {
	from  string // "" for the start URLs
	links []string
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	worklist := make(chan item)
	unseenLinks := make(chan string)
	n := 1
	go func() { worklist <- item{links: flag.Args()} }()

	for i := 0; i < 20; i++ {
		go func() {
			for link := range unseenLinks {
				found := crawl(link)
				go func(link string) { worklist <- item{link, found} }(link)
			}
		}()
	}

	seen := map[string]int{}
	found := map[string][]string{}
	var visit func(list []string, depth int)
	visit = func(list []string, depth int) {
		if *maxDepth >= 0 && depth > *maxDepth {
			return
		}
		for _, link := range list {
			d, ok := seen[link] // only links on the host are seen: those need no second test
			if !ok {
				if !onHost(link) {
					continue
				}
				seen[link] = depth
				n++
				unseenLinks <- link
			} else if depth < d {
				seen[link] = depth
				if l, ok := found[link]; ok {
					visit(l, depth+1)
				}
			}
		}
	}
	for ; n > 0; n-- {
		it := <-worklist
		if it.from == "" {
			visit(it.links, 0)
			continue
		}
		if *maxDepth >= 0 {
			found[it.from] = it.links
		}
		visit(it.links, seen[it.from]+1)
	}
	close(unseenLinks)
}
