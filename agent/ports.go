package agent

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

// listeningPorts lists the TCP ports in LISTEN state from /proc/net/tcp and
// /proc/net/tcp6 (Linux), sorted and without duplicates.
func listeningPorts() ([]agentproto.ListeningPort, error) {
	seen := map[uint16]bool{}
	var out []agentproto.ListeningPort
	found := false
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		found = true
		sc := bufio.NewScanner(f)
		first := true
		for sc.Scan() {
			if first {
				first = false
				continue
			}
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" {
				continue
			}
			_, portHex, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			p, err := strconv.ParseUint(portHex, 16, 16)
			if err != nil || seen[uint16(p)] {
				continue
			}
			seen[uint16(p)] = true
			out = append(out, agentproto.ListeningPort{Network: "tcp", Port: uint16(p)})
		}
		_ = f.Close()
	}
	if !found {
		return nil, fmt.Errorf("listing ports needs /proc/net/tcp")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out, nil
}
