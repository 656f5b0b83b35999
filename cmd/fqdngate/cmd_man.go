package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manSection is where fqdngate's pages go: system administration
// commands and daemons.
const manSection = "8"

func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write the man pages (fqdngate.8, fqdngate-run.8, ...) into DIR",
		Long: `Write a man page for fqdngate and each of its commands into DIR, which is
made if missing. The date is SOURCE_DATE_EPOCH's when set, so that a
package build is reproducible.`,
		Args: exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			date := time.Now()
			if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
				sec, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return inputError(fmt.Errorf("SOURCE_DATE_EPOCH %q is not seconds since 1970", s))
				}
				date = time.Unix(sec, 0).UTC()
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return runtimeError(err)
			}
			header := &doc.GenManHeader{Title: "FQDNGATE", Section: manSection, Date: &date,
				Source: "fqdngate " + versionString(), Manual: "fqdngate manual"}
			if err := doc.GenManTree(cmd.Root(), header, dir); err != nil {
				return runtimeError(fmt.Errorf("man pages into %s: %w", dir, err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "man pages written to %s\n", dir)
			return nil
		},
	}
}
