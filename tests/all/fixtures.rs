//! Fixtures the integration tests and the benchmarks share (the benchmarks
//! include this file by path).

/// Registers apps in `db` directly, owned by one account made for them,
/// for code that drives the platform's parts below the API: a storage
/// write or an order needs its app to exist.
pub async fn register_apps(db: &miniapp::db::Db, appids: &[&str]) {
    use miniapp::accounts::{Roles, Username};
    use miniapp::db::Registration;
    let owner: Username = "app-owner".parse().unwrap();
    let owner = match db
        .create_account(&owner, "", "", "", &Roles::new([]))
        .await
        .unwrap()
    {
        Some(account) => account,
        None => db.account_by_username(&owner).await.unwrap().unwrap(),
    };
    for appid in appids {
        let registered = db
            .create_app(&appid.parse().unwrap(), owner.id, appid, "", "")
            .await
            .unwrap();
        assert!(matches!(registered, Registration::Created), "{appid}");
    }
}
