//! `op25b-bench kernel-lookup` measures what it says: op25b's XDP program with a policy in
//! its maps drops the TCP/25 SYN that hits the table and forwards the one that misses,
//! IPv4 and IPv6, in mode kernel; in mode unblockable the same SYNs go to the workers
//! (the baseline without a lookup). Root only (it loads the program).

use op25b_testkit::klookup::kernel_lookup;

#[test]
#[ignore = "needs root: loads op25b's XDP program and runs it with BPF_PROG_TEST_RUN"]
fn lookup_frames_hit_miss_and_baseline() {
    let r = kernel_lookup(&[1_000, 20_000], 1_000, 3).expect("kernel-lookup (needs root)");
    assert_eq!(r.tables.len(), 2);
    for n in [1_000, 20_000] {
        let action = |mode: &str, frame: &str| {
            r.rows
                .iter()
                .find(|x| x.prefixes == n && x.mode == mode && x.frame == frame)
                .unwrap_or_else(|| panic!("no row {n} {mode} {frame}: {:?}", r.rows))
                .action
        };
        for fam in ["ipv4", "ipv6"] {
            assert_eq!(action("kernel", &format!("{fam} tcp/25 hit")), "drop");
            assert_eq!(action("kernel", &format!("{fam} tcp/25 miss")), "redirect");
            assert_eq!(action("unblockable", &format!("{fam} tcp/25 hit")), "pass");
            assert_eq!(action("unblockable", &format!("{fam} tcp/25 miss")), "pass");
        }
        assert_eq!(action("kernel", "ipv4 tcp/443"), "redirect");
        assert_eq!(action("unblockable", "ipv4 tcp/443"), "redirect");
    }
    assert!(r
        .rows
        .iter()
        .all(|x| x.ns > 0 && x.ns_min <= x.ns && x.ns <= x.ns_max));
}
