package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

func newListServersCommand(g *globalOptions) *cobra.Command {
	var minimal bool
	c := &cobra.Command{
		Use:   "list-servers",
		Short: "List configured servers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			type row struct {
				Description string `json:"description"`
				Active      bool   `json:"active"`
				Passive     bool   `json:"passive"`
			}
			rows := map[string]row{}
			for _, name := range cfg.ServerNames() {
				s := cfg.Servers[name]
				rows[name] = row{Description: s.Description, Active: s.Active, Passive: s.IsPassive()}
				if g.json() {
					continue
				}
				if minimal {
					fmt.Fprintln(g.out, name)
					continue
				}
				line := name + " - " + s.Description
				if !s.Active {
					line += " (inactive)"
				}
				if s.IsPassive() {
					line += " (Passive)"
				}
				fmt.Fprintln(g.out, line)
			}
			if g.json() {
				return writeJSON(g.out, rows)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&minimal, "minimal", false, "only print server names")
	return c
}

func newShowServersCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show-servers SERVER|all [SERVER...]",
		Short: "Show the configuration (secrets redacted) and remote status of servers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srvs, err := g.servers(args)
			if err != nil {
				return err
			}
			all := map[string]map[string]any{}
			for _, s := range srvs {
				info := s.Config().Redacted()
				info["passive_node"] = s.Config().IsPassive()
				if !s.Config().IsPassive() {
					ctx, cancel := context.WithTimeout(cmd.Context(), s.Config().CheckTimeout)
					for k, v := range s.RemoteStatus(ctx) {
						info[k] = v
					}
					cancel()
				}
				all[s.Name()] = info
			}
			if g.json() {
				return writeJSON(g.out, all)
			}
			for _, s := range srvs {
				info := all[s.Name()]
				fmt.Fprintf(g.out, "Server %s:\n", s.Name())
				keys := make([]string, 0, len(info))
				for k := range info {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(g.out, "\t%s: %s\n", k, formatValue(info[k]))
				}
			}
			return nil
		},
	}
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case time.Duration:
		return x.String()
	case []string:
		b, _ := json.Marshal(x)
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}
