// Command natlab builds a named NAT lab by hand for debugging (the same
// topology the natlab tests build). It is what scripts/natlab.sh runs.
//
//	natlab up VARIANT      build the lab and print its namespaces
//	natlab down VARIANT    delete it (killing processes left inside)
//	natlab status VARIANT  show its namespaces, addresses and NAT rules
//
// VARIANT lists the NAT kind of each site joined by "+", e.g. "easy+hard",
// "easy+udp-blocked", "easyaf+hard". Kinds: easy, easyaf, hard, udp-blocked.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"

	"github.com/wgmesh/coder/natlab"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "natlab:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: natlab up|down|status VARIANT (e.g. easy+hard)")
	}
	cmd, variant := args[0], args[1]
	sites, err := parseVariant(variant)
	if err != nil {
		return err
	}
	name := regexp.MustCompile(`[^a-z0-9]`).ReplaceAllString(strings.ReplaceAll(variant, "+", "x"), "")
	switch cmd {
	case "up":
		if err := natlab.Check(); err != nil {
			return err
		}
		lab, err := natlab.Create(ctx, natlab.Options{Sites: sites, Name: name})
		if err != nil {
			return err
		}
		fmt.Printf("internet %s: %s (servers), %s\n", lab.Internet.Name, natlab.InternetAddr, natlab.InternetAltAddr)
		for _, s := range lab.Sites {
			fmt.Printf("site %d (%s): router %s wan %s lan %s; host %s %s\n",
				s.Index, s.NAT, s.Router.Name, s.WANAddr, s.RouterLANAddr, s.Host.Name, s.HostAddr)
		}
		fmt.Printf("run a command in a namespace: ip netns exec %s <cmd>; tear down: scripts/natlab.sh down %s\n",
			lab.Sites[0].Host.Name, variant)
		return nil
	case "down":
		return natlab.DeleteNamed(ctx, name, nil)
	case "status":
		names, err := natlab.ListNamespaces(ctx)
		if err != nil {
			return err
		}
		prefix := "nld-" + name + "-"
		found := false
		for _, n := range names {
			if !strings.HasPrefix(n, prefix) {
				continue
			}
			found = true
			ns := &natlab.Namespace{Name: n}
			fmt.Printf("== %s\n", n)
			out, _ := ns.Exec(ctx, "ip", "-br", "addr")
			fmt.Print(out)
			if strings.Contains(strings.TrimPrefix(n, prefix), "r") {
				out, _ = ns.Exec(ctx, "iptables", "-S")
				fmt.Print(out)
				out, _ = ns.Exec(ctx, "iptables", "-t", "nat", "-S")
				fmt.Print(out)
			}
		}
		if !found {
			fmt.Printf("no lab %q is up\n", variant)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q (want up, down or status)", cmd)
}

func parseVariant(v string) ([]natlab.NAT, error) {
	var sites []natlab.NAT
	for _, part := range strings.Split(v, "+") {
		n, err := natlab.ParseNAT(part)
		if err != nil {
			return nil, fmt.Errorf("variant %q: %w", v, err)
		}
		sites = append(sites, n)
	}
	return sites, nil
}
