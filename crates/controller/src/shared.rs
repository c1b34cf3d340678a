//! [`Shared`]: a collection of the metadata image that copies of the image
//! share until one of them changes it.
//!
//! The state machine publishes a copy of the image after every applied
//! entry (offset commits included); with each map shared, that copy costs a
//! reference count per map, not a copy of every topic name and record. A
//! mutable borrow copies the collection first if another image still
//! shares it (`Arc::make_mut`), so an apply that changes the groups copies
//! the groups map once and leaves the topics shared. Encoded exactly as the
//! collection itself.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shared<T>(Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    /// Whether both are the same allocation (a copy no apply has changed).
    pub fn same(a: &Shared<T>, b: &Shared<T>) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Self {
        Shared(Arc::new(value))
    }
}

impl<T: FromIterator<A>, A> FromIterator<A> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = A>>(items: I) -> Self {
        Shared(Arc::new(items.into_iter().collect()))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    /// Copies the collection first if another image shares it.
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

impl<'a, T> IntoIterator for &'a Shared<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        (&*self.0).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_copy_shares_until_one_side_changes_and_encodes_as_the_collection() {
        let mut a: Shared<BTreeMap<String, u32>> = BTreeMap::from([("x".to_string(), 1)]).into();
        let b = a.clone();
        assert!(Shared::same(&a, &b));
        a.insert("y".into(), 2);
        assert!(!Shared::same(&a, &b));
        assert_eq!(b.len(), 1);
        assert_eq!(a.len(), 2);
        let plain = BTreeMap::from([("x".to_string(), 1u32), ("y".to_string(), 2)]);
        let config = bincode::config::standard();
        assert_eq!(bincode::serde::encode_to_vec(&a, config).unwrap(), bincode::serde::encode_to_vec(&plain, config).unwrap());
    }
}
