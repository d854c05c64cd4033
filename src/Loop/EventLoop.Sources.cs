namespace IoMux.Loop;

/// <summary>When the iteration looks at a source, besides dispatching it: what a kind of source tells the loop
/// (<see cref="EventSource.Visit"/>), which puts it in the matching list of EventLoop.Sources.cs. Fixed for the
/// source's life.</summary>
internal enum SourceVisit : byte
{
    /// <summary>When the poller reports the source's id, the token its descriptor is registered under (I/O, inotify and
    /// memory pressure sources, a child watched through its pidfd): one lookup, never a walk.</summary>
    WhenReported,

    /// <summary>Each iteration, asked whether a signal came (<see cref="EventSource.IsPending"/>): signal sources. One
    /// that is pending keeps the wait from sleeping; they become pending before the defer sources.</summary>
    WhenSignalled,

    /// <summary>Each iteration while on: defer sources. One that is on keeps the wait from sleeping.</summary>
    EachIteration,

    /// <summary>After an iteration that dispatched something, in priority order: post sources.</summary>
    AfterDispatch,

    /// <summary>When the loop exits, in priority order: exit sources.</summary>
    AtExit,

    /// <summary>Not by the iteration: something else finds it (a child watched through SIGCHLD: the loop's SIGCHLD
    /// source polls it; a timer: the timer table, which holds it while armed).</summary>
    Elsewhere,
}

// The loop's bookkeeping of its sources, all of it. A kind of source says when the iteration visits it (its Visit), its
// AddXxx method hands it to Attach, and EventSource.Dispose takes it out with Detach: a new kind touches its own file
// and its AddXxx, not this one (docs/LOOP.md, "Adding a kind of source"). Every source but a timer is in _sources, by
// its id; disposing the loop and ExitOnIdle walk that, the iteration never does: it looks the poller's reports up in
// it, and walks only the short lists of the sources it must visit without a report. Timers live in the timer table.
public sealed partial class EventLoop
{
    private readonly Dictionary<long, EventSource> _sources = new(); // every source but a timer, by id (= poller token)
    private readonly List<EventSource> _whenSignalled = []; // SourceVisit.WhenSignalled: signal sources
    private readonly List<EventSource> _eachIteration = []; // SourceVisit.EachIteration: defer sources
    private readonly List<EventSource> _afterDispatch = []; // SourceVisit.AfterDispatch: post sources
    private readonly List<EventSource> _atExit = []; // SourceVisit.AtExit: exit sources
    private int _reportedCount; // SourceVisit.WhenReported sources, for the iomux.loop.io_source.count metric
    // By what a source has set rather than by kind: any source, timers included.
    private readonly List<EventSource> _prepares = []; // sources with a prepare callback
    private readonly List<EventSource> _destroyables = []; // sources with a destroy callback (a timer is in no other list)
    private readonly List<EventSource> _limited = []; // sources held back by their rate limit

    internal int IoSourceCount => _reportedCount;

    /// <summary>Takes in a source its AddXxx method made (a timer is not taken in: the timer table holds it).</summary>
    private T Attach<T>(T source) where T : EventSource
    {
        _sources.Add(source.Id, source);
        if (source.Visit == SourceVisit.WhenReported)
            _reportedCount++;
        else
            ListOf(source.Visit)?.Add(source);
        return source;
    }

    /// <summary>Lets go of a source being disposed (<see cref="EventSource.Dispose"/>); nothing for a timer.</summary>
    internal void Detach(EventSource source)
    {
        if (!_sources.Remove(source.Id))
            return;
        if (source.Visit == SourceVisit.WhenReported)
            _reportedCount--;
        else
            ListOf(source.Visit)?.Remove(source);
    }

    private List<EventSource>? ListOf(SourceVisit visit) => visit switch
    {
        SourceVisit.WhenSignalled => _whenSignalled,
        SourceVisit.EachIteration => _eachIteration,
        SourceVisit.AfterDispatch => _afterDispatch,
        SourceVisit.AtExit => _atExit,
        _ => null,
    };

    internal void TrackPrepare(EventSource source, bool add)
    {
        if (add)
            _prepares.Add(source);
        else
            _prepares.Remove(source);
    }

    internal void TrackDestroy(EventSource source, bool add)
    {
        if (add)
            _destroyables.Add(source);
        else
            _destroyables.Remove(source);
    }

    /// <summary>Sources held back by their rate limit: the loop must wake when the first limit lifts.</summary>
    internal void Track(EventSource source) => _limited.Add(source);

    /// <summary>Every source still alive, disposed with the loop, so that destroy callbacks run and signal
    /// registrations end. The first exception a destroy callback throws is rethrown once all are disposed.</summary>
    private Exception? DisposeSources()
    {
        // A copy: each disposal takes its source out (and a destroy callback may dispose others). Timers are in it
        // when they have a destroy callback; one without has nothing to run, and goes with the timer table.
        var all = new List<EventSource>(_sources.Count + _destroyables.Count);
        all.AddRange(_sources.Values);
        all.AddRange(_destroyables);
        Exception? first = null;
        foreach (var source in all)
        {
            try
            {
                source.Dispose();
            }
            catch (Exception e)
            {
                first ??= e;
            }
        }
        return first;
    }
}
