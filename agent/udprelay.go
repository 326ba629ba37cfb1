package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

// udpRelay serves UDP relay streams (agentproto.UDPRelayRequest).
type udpRelay struct {
	logger *slog.Logger
}

// serve relays one stream until it closes or idles out.
func (u *udpRelay) serve(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 64<<10)
	line, err := readLimitedLine(br, agentproto.MaxUDPRelayHeader)
	if err != nil {
		u.logger.Debug("udp relay: read request", "error", err)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	refuse := func(err error) {
		u.logger.Info("udp relay refused", "error", err)
		b, _ := json.Marshal(agentproto.UDPRelayResponse{Error: err.Error()})
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(append(b, '\n'))
	}
	var req agentproto.UDPRelayRequest
	if err := json.Unmarshal(line, &req); err != nil {
		refuse(fmt.Errorf("decode udp relay request: %w", err))
		return
	}
	target, err := agentproto.ParseUDPRelayTarget(req.Target)
	if err != nil {
		refuse(err)
		return
	}
	idle := req.IdleTimeout
	if idle <= 0 {
		idle = agentproto.DefaultUDPRelayIdleTimeout
	}
	idle = min(idle, agentproto.MaxUDPRelayIdleTimeout)
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		refuse(fmt.Errorf("dial udp %s in workspace: %w", target, err))
		return
	}
	defer uc.Close()
	ok, _ := json.Marshal(agentproto.UDPRelayResponse{})
	if _, err := c.Write(append(ok, '\n')); err != nil {
		return
	}
	logger := u.logger.With("target", target.String())
	logger.Debug("udp relay started", "idle_timeout", idle)
	agentproto.RelayDatagrams(agentproto.NewUDPFrameConn(c, br, nil), uc, idle, logger)
	logger.Debug("udp relay ended")
}

// readLimitedLine reads one line of at most limit bytes (newline included).
func readLimitedLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}
