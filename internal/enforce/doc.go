// Package enforce owns fqdngate's nftables table: its chains, its allow
// sets and the elements in them. It never touches another table.
//
// The table, for hook forward and scope client:
//
//	table inet fqdngate {
//	    counter drops; counter would_drops; counter dot_drops; counter dns_redirects
//	    set allow4  { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags timeout }
//	    set allow4r { same; flags interval,timeout }          # rules with port ranges
//	    set allow6, allow6r                                    # the same for IPv6
//	    chain filter { type filter hook forward priority filter; policy accept
//	        ct state established,related accept                # flows outlive their answer
//	        ip saddr 192.0.2.0/26 jump check                   # one rule per client network
//	    }
//	    chain check {
//	        tcp dport 853 log group 53 counter name dot_drops drop    # DoT bypass (enforce only)
//	        ip saddr . ip daddr . meta l4proto . th dport @allow4 accept
//	        ...                                                # allow4r, allow6, allow6r
//	        log group 53 prefix "fqdngate drop" counter name drops drop
//	    }
//	    chain dns { type nat hook prerouting priority dstnat
//	        ip saddr 192.0.2.0/26 udp dport 53 counter name dns_redirects dnat ip to 192.0.2.1:53
//	    }
//	}
//
// Elements carry their own timeout, so the kernel ages them out even if
// fqdngate is gone. One goroutine writes to the kernel; concurrent Allow
// calls are group-committed into one netlink transaction, and each call
// returns only after the kernel acknowledged the transaction holding it.
//
// The table is watched (watch.go): a change to it by any other process
// (`nft flush ruleset`, a deleted chain, an element added) makes it lost
// at once, Allow fails with ErrTableLost and Holds says no, so no answer
// that needs an address is released; the writer rebuilds the table from
// the live grants in one transaction, retrying with backoff, and resumes.
package enforce
