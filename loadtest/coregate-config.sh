# Sourced by loadtest/instructions.sh and loadtest/crosscheck.sh: the one coregate
# configuration both measure, a plain keep-alive reverse proxy with one worker.
#
#   write_coregate_config FILE LISTEN ORIGIN
write_coregate_config() {
    cat >"$1" <<CONFIG
[server]
workers = 1
[[listener]]
address = "$2"
[upstreams.origin]
endpoints = [{ address = "$3" }]
pool_idle_max = 64
[[route]]
path_prefix = "/"
upstream = "origin"
[admin]
address = "127.0.0.1:0"
CONFIG
}
