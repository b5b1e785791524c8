fn main() {
    print!("{}", freshteam_operator::api::crds_yaml());
}
