package server

import "github.com/cellar-backup/cellar/passive"

// PassiveOptions maps a passive server's configuration to the passive
// package's options. Forwarding the configuration path to the primary
// (forward_config_path) is the caller's, which knows the path it was given.
func (s *Server) PassiveOptions() passive.Options {
	cfg := s.cfg
	return passive.Options{
		Server:             s.name,
		Layout:             s.layout,
		PrimarySSHCommand:  cfg.PrimarySSHCommand,
		BandwidthLimitKBps: cfg.BandwidthLimit,
		Compression:        string(cfg.Compression),
		Logger:             s.log,
		Now:                s.Now,
	}
}
