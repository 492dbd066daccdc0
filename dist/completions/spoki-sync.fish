# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_spoki_sync_global_optspecs
    string join \n h/help V/version
end

function __fish_spoki_sync_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_spoki_sync_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_spoki_sync_using_subcommand
    set -l cmd (__fish_spoki_sync_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -s V -l version -d 'Print version'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "run" -d 'Run the daemon in the foreground'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "check-config" -d 'Check the configuration; exit 0, or 78 naming every bad key'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "plan" -d 'Read a CSV as the inbox would and print what would be sent. Sends nothing'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "cmd" -d 'Queue one Spoki action through the running daemon\'s admin API'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "status" -d 'Print the running daemon\'s status'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "rejects" -d 'List what was accepted but cannot be sent, newest first (`GET /v1/rejects`)'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "sim" -d 'Run the bundled Spoki simulator'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "demo" -d 'Quickstart: simulator + daemon on loopback, a sample CSV dropped in, then a summary'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "actions" -d 'List the actions `cmd` takes: method, path, rate limit and params'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "man" -d 'Print the man page (roff), e.g. `spoki-sync man | man -l -`'
complete -c spoki-sync -n "__fish_spoki_sync_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand run" -l config -r -F
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand run" -l allow-new-database -d 'Start even though `<storage.database>.id` says another database was there (the file was deleted, emptied or replaced): what was queued in the lost one is gone'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand run" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand check-config" -l config -r -F
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand check-config" -l online -d 'Also check spoki.api_key with one cheap request to Spoki'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand plan" -l config -r -F
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand plan" -l list -d 'Plan for `inbox/lists/<ID>/`' -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand plan" -l json
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand plan" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand cmd" -l params -d 'The action\'s params as a JSON object; `@FILE` reads it from a file, `-` from stdin' -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand cmd" -l config -r -F
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand cmd" -l wait -d 'Wait until the command ends and print Spoki\'s answer; exit 1 if it failed'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand cmd" -l json -d 'Print JSON for scripts'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand cmd" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand status" -l config -r -F
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand status" -l json
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand status" -l watch -d 'Refresh every 2 s, like `top`, until Ctrl-C'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand status" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand rejects" -l limit -d 'At most this many (1 to 1000)' -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand rejects" -l before -d 'Continue after this reject id (the previous page\'s last)' -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand rejects" -l source -d 'Only those of this source: csv, webhook, mirror, …' -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand rejects" -l file -d 'Only those of this CSV file, named as dropped (e.g. lists/7/x.csv)' -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand rejects" -l config -r -F
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand rejects" -l json -d 'Print the JSON answer for scripts'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand rejects" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand sim" -l listen -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand sim" -l api-key -r
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand sim" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand demo" -l keep -d 'Keep the working folder (database, inbox, reports) instead of removing it'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand demo" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand actions" -l json -d 'Print JSON for scripts'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand actions" -l markdown -d 'Print the catalogue as Markdown (docs/actions.md)'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand actions" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand completions" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand man" -s h -l help -d 'Print help'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "run" -d 'Run the daemon in the foreground'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "check-config" -d 'Check the configuration; exit 0, or 78 naming every bad key'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "plan" -d 'Read a CSV as the inbox would and print what would be sent. Sends nothing'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "cmd" -d 'Queue one Spoki action through the running daemon\'s admin API'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "status" -d 'Print the running daemon\'s status'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "rejects" -d 'List what was accepted but cannot be sent, newest first (`GET /v1/rejects`)'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "sim" -d 'Run the bundled Spoki simulator'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "demo" -d 'Quickstart: simulator + daemon on loopback, a sample CSV dropped in, then a summary'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "actions" -d 'List the actions `cmd` takes: method, path, rate limit and params'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "man" -d 'Print the man page (roff), e.g. `spoki-sync man | man -l -`'
complete -c spoki-sync -n "__fish_spoki_sync_using_subcommand help; and not __fish_seen_subcommand_from run check-config plan cmd status rejects sim demo actions completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
