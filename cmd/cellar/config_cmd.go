package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/durable"
)

func newConfigCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Configuration helpers",
	}
	c.AddCommand(newConfigImportBarmanCommand(g), newConfigCheckCommand(g))
	return c
}

func newConfigImportBarmanCommand(g *globalOptions) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "import-barman BARMAN_CONF",
		Short: "Convert a barman.conf (INI) into Cellar's config.yaml",
		Long: "Reads a Barman INI configuration (global [barman] section and one section per server)\n" +
			"and prints the equivalent Cellar YAML. Options Cellar does not use are reported as warnings on stderr.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConfigImportBarman(g, args[0], output)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "write the YAML to this file (0600, atomically) instead of stdout")
	return c
}

func runConfigImportBarman(g *globalOptions, file, output string) error {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return usageError("barman configuration %s: file not found", file)
		}
		return fmt.Errorf("barman configuration %s: %w", file, err)
	}
	defer f.Close()
	out, warnings, err := config.ImportBarmanINI(f, file)
	for _, w := range warnings {
		fmt.Fprintf(g.errOut, "warning: %s\n", w)
	}
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("import %s: %w", file, err))
	}
	if output == "" {
		_, err = g.out.Write(out)
		return err
	}
	if err := writeFileAtomic(output, out); err != nil {
		return err
	}
	fmt.Fprintf(g.errOut, "wrote %s\n", output)
	return nil
}

func newConfigCheckCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Load and validate the configuration, reporting every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings {
				fmt.Fprintf(g.errOut, "warning: %s\n", w)
			}
			fmt.Fprintf(g.out, "%s: OK (%d servers)\n", cfg.File, len(cfg.Servers))
			return nil
		},
	}
}

func writeFileAtomic(path string, data []byte) error {
	if err := durable.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
