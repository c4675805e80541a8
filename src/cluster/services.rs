//! A typed slot per shard for the services of the layers above cluster (the coordinator
//! hosts of groups and transactions), so their state lives and dies with the shard instead
//! of a thread-local.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::Rc;

use ahash::AHashMap;

/// At most one instance of each type, created on first use.
#[derive(Default)]
pub struct Services {
    by_type: RefCell<AHashMap<TypeId, Rc<dyn Any>>>,
}

impl Services {
    /// The instance of `T`, created by `init` if there is none yet. `init` runs outside any
    /// borrow, so it may ask for other services or spawn tasks that will; if it created a
    /// `T` itself on the way, that first one is kept.
    pub fn get_or_init<T: 'static>(&self, init: impl FnOnce() -> T) -> Rc<T> {
        let key = TypeId::of::<T>();
        let existing = self.by_type.borrow().get(&key).cloned();
        let service = match existing {
            Some(service) => service,
            None => {
                let created: Rc<dyn Any> = Rc::new(init());
                self.by_type
                    .borrow_mut()
                    .entry(key)
                    .or_insert(created)
                    .clone()
            }
        };
        match service.downcast::<T>() {
            Ok(service) => service,
            Err(_) => unreachable!("services are keyed by their own TypeId"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn one_instance_per_type_created_once() {
        let services = Services::default();
        let created = Cell::new(0);
        let first = services.get_or_init(|| {
            created.set(created.get() + 1);
            Cell::new(7u32)
        });
        first.set(8);
        let again = services.get_or_init(|| {
            created.set(created.get() + 1);
            Cell::new(0u32)
        });
        assert_eq!(again.get(), 8);
        assert_eq!(created.get(), 1);
        let other = services.get_or_init(|| String::from("another type"));
        assert_eq!(other.as_str(), "another type");
    }

    #[test]
    fn init_may_ask_for_other_services_and_the_first_instance_wins() {
        let services = Services::default();
        let outer = services.get_or_init(|| {
            let inner = services.get_or_init(|| 1u8);
            let again = services.get_or_init(|| 2u64);
            (*inner, *again)
        });
        assert_eq!(*outer, (1, 2));
        let reentrant = services.get_or_init(|| {
            let _ = services.get_or_init(|| 10i32);
            20i32
        });
        assert_eq!(*reentrant, 10);
    }
}
