package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script",
		Long: `Print the completion script for a shell: commands, flags, profile names
and flag values complete.

  bash:  fqdngate completion bash > /etc/bash_completion.d/fqdngate
  zsh:   fqdngate completion zsh > "${fpath[1]}/_fqdngate"
  fish:  fqdngate completion fish > ~/.config/fish/completions/fqdngate.fish`,
		Args:      cobra.MatchAll(exactArgs("SHELL"), cobra.OnlyValidArgs),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			w, root := cmd.OutOrStdout(), cmd.Root()
			var err error
			switch args[0] {
			case "bash":
				err = root.GenBashCompletionV2(w, true)
			case "zsh":
				err = root.GenZshCompletion(w)
			case "fish":
				err = root.GenFishCompletion(w, true)
			}
			if err != nil {
				return runtimeError(fmt.Errorf("completion %s: %w", args[0], err))
			}
			return nil
		},
	}
}
