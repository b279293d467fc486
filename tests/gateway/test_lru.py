from gateway.lru import LruCache


def test_put_then_get_returns_the_value():
    cache = LruCache(2)
    cache.put("a", 1)
    assert cache.get("a") == 1


def test_missing_key_is_none():
    assert LruCache(2).get("a") is None


def test_over_capacity_drops_the_least_recently_used():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")            # now "b" is the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_putting_an_existing_key_replaces_without_growing():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("a", 2)
    assert cache.get("a") == 2 and len(cache) == 1
