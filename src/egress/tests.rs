use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn internal_ranges_are_named() {
    for (addr, range) in [
        ("127.0.0.1", Some("loopback")),
        ("10.0.0.1", Some("private")),
        ("172.16.5.4", Some("private")),
        ("192.168.1.1", Some("private")),
        ("169.254.169.254", Some("cloud metadata")),
        ("169.254.1.1", Some("link-local")),
        ("100.64.0.1", Some("carrier-grade NAT")),
        ("100.127.255.254", Some("carrier-grade NAT")),
        ("0.0.0.0", Some("reserved")),
        ("255.255.255.255", Some("reserved")),
        ("::1", Some("loopback")),
        ("::", Some("unspecified")),
        ("fd00:ec2::254", Some("cloud metadata")),
        ("fd12:3456::1", Some("unique-local")),
        ("fe80::1", Some("link-local")),
        ("::ffff:10.1.2.3", Some("private")),
        ("::ffff:169.254.169.254", Some("cloud metadata")),
        ("64:ff9b::a00:1", Some("private")),
        ("100.128.0.1", None),
        ("8.8.8.8", None),
        ("172.32.0.1", None),
        ("2606:4700::1111", None),
    ] {
        assert_eq!(internal_range(ip(addr)), range, "{addr}");
    }
}

#[test]
fn rules_decide_per_address() {
    use AddressRule::*;
    assert!(check_address(Any, "x", ip("169.254.169.254")).is_ok());
    assert!(check_address(PublicOrLoopback, "x", ip("127.0.0.1")).is_ok());
    assert!(check_address(PublicOrLoopback, "x", ip("::ffff:127.0.0.1")).is_ok());
    assert!(check_address(PublicOrLoopback, "x", ip("10.0.0.1")).is_err());
    assert!(check_address(PublicOnly, "x", ip("8.8.8.8")).is_ok());
    let e = check_address(PublicOnly, "members.example.com", ip("127.0.0.1")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "refused to connect to members.example.com: it resolves to 127.0.0.1 (loopback address), and the operator reaches only public addresses unless started with --allow-custom-endpoints"
    );
}

#[test]
fn ip_literals_are_checked_before_any_request() {
    let strict = Egress::operator(false);
    let url = |s: &str| Url::parse(s).unwrap();
    let e = strict
        .check_url(&url("https://169.254.169.254/latest/meta-data"))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("169.254.169.254 (cloud metadata address)"),
        "{e}"
    );
    assert!(strict.check_url(&url("https://[fd00:ec2::254]/")).is_err());
    assert!(strict
        .check_url(&url("https://members.example.com/"))
        .is_ok());
    assert!(Egress::default()
        .check_url(&url("http://127.0.0.1:8080/"))
        .is_ok());
    assert!(Egress::operator(true)
        .check_url(&url("http://10.0.0.1/"))
        .is_ok());
}

#[tokio::test]
async fn the_resolver_refuses_an_answer_with_any_internal_address() {
    let resolver = CheckingResolver {
        rule: AddressRule::PublicOnly,
        inner: Some(Arc::new(FixedDns {
            host: "rebind.example".into(),
            addrs: vec![ip("93.184.216.34"), ip("10.0.0.1")],
        })),
    };
    let e = match resolver.resolve("rebind.example".parse().unwrap()).await {
        Ok(_) => panic!("resolved"),
        Err(e) => e,
    };
    assert!(
        e.to_string()
            .contains("resolves to 10.0.0.1 (private address)"),
        "{e}"
    );
}

#[test]
fn sizes_read_well() {
    assert_eq!(size(16 << 20), "16 MiB");
    assert_eq!(size(1000), "1000 bytes");
}
