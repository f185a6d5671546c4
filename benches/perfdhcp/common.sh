# Helpers the perfdhcp benchmark scripts share; sourced, not run.

TICKS=$(getconf CLK_TCK)

cpu_ticks() { # $1: a pid; prints its utime + stime, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

per_dora() { # $1: CPU ticks, $2: DORAs completed; prints microseconds per DORA
    awk -v t="$1" -v hz="$TICKS" -v n="$2" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }'
}

# The totals of perfdhcp logs (one per generator): prints "completed_rate drop_percent
# acks_received", the rates and counts summed, the ACKs as each log's second exchange
# (REQUEST/ACK) received count.
perfdhcp_totals() { # $@: perfdhcp log files
    awk '
        FNR == 1 { file++ }
        /^Rate:/ { rate += $2 }
        /^sent packets:/ { sent += $3 }
        /^received packets:/ { if (++n[file] == 2) acks += $3 }
        /^drops:/ { drops += $2 }
        END {
            if (sent == 0) { print "0 100 0"; exit }
            printf "%.0f %.3f %d\n", rate, 100 * drops / sent, acks
        }' "$@"
}
