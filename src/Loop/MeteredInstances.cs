namespace IoMux.Loop;

/// <summary>The live instances (loops, proxies) that a meter's observable instruments sum over when a listener
/// collects, plus what the retired ones had counted, so that a counter never goes down when an instance ends. The
/// instances keep plain fields on their own thread; only a collection (seconds apart, on the listener's thread)
/// takes the lock and reads them, which is what makes the metrics free while nobody listens.</summary>
/// <remarks>Instances are held weakly: one dropped without being retired stops counting when it is collected.
/// The reads race with the owning thread, as any sampled counter does: a 64-bit field is read whole on the
/// 64-bit platforms IoMux runs on, and a value one event old is what a sample means.
/// <paramref name="publish"/> makes the meter; it runs once, with the first instance or later (<see cref="MeterPublication"/>).</remarks>
internal sealed class MeteredInstances<T>(Action publish, params Func<T, long>[] readers) where T : class
{
    private readonly object _lock = new();
    private readonly List<WeakReference<T>> _live = [];
    private readonly long[] _retired = new long[readers.Length];
    private int _publishRequested;

    /// <summary>Starts counting <paramref name="instance"/>.</summary>
    public void Add(T instance)
    {
        lock (_lock)
            _live.Add(new WeakReference<T>(instance));
        if (Interlocked.Exchange(ref _publishRequested, 1) == 0)
            MeterPublication.Request(publish);
    }

    /// <summary>Stops counting <paramref name="instance"/>, keeping its final values in the totals.</summary>
    public void Retire(T instance)
    {
        lock (_lock)
        {
            int index = _live.FindIndex(entry => entry.TryGetTarget(out var live) && ReferenceEquals(live, instance));
            if (index < 0)
                return;
            _live.RemoveAt(index);
            for (int i = 0; i < readers.Length; i++)
                _retired[i] += readers[i](instance);
        }
    }

    /// <summary>Reading <paramref name="metric"/> summed over the live instances, plus the retired ones' when it is a
    /// total (a counter) rather than a level (a gauge).</summary>
    public long Sum(int metric, bool includeRetired = true)
    {
        lock (_lock)
        {
            long sum = includeRetired ? _retired[metric] : 0;
            for (int i = _live.Count - 1; i >= 0; i--)
            {
                if (_live[i].TryGetTarget(out var instance))
                    sum += readers[metric](instance);
                else
                    _live.RemoveAt(i);
            }
            return sum;
        }
    }

    /// <summary>Live instances.</summary>
    public long Count
    {
        get
        {
            lock (_lock)
                return _live.Count(entry => entry.TryGetTarget(out _));
        }
    }
}
