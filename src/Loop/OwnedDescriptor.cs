using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>A descriptor a source owns (an inotify instance, a pressure file) and keeps registered with the loop's poller,
/// under the source's id, exactly while the source is on and not rate limited: a queue nobody reads must not keep the
/// loop awake. Closed with the source.</summary>
internal sealed class OwnedDescriptor
{
    private readonly EventSource _source;
    private readonly Interest _interest;
    private Registration? _registration;

    /// <summary>Takes <paramref name="fd"/> over and registers it if the source is on. When the poller refuses it (select:
    /// a descriptor at or above FD_SETSIZE; a backend that cannot watch a regular file), closes it and throws: the
    /// source's constructor throws, the caller gets no source, and nothing else would ever close it.</summary>
    public OwnedDescriptor(EventSource source, int fd, Interest interest)
    {
        _source = source;
        _interest = interest;
        Fd = fd;
        try
        {
            Sync();
        }
        catch
        {
            LibC.CloseQuietly(fd);
            throw;
        }
    }

    /// <summary>The descriptor.</summary>
    public int Fd { get; }

    /// <summary>Registers or deregisters after the source's state or rate limit changed.</summary>
    public void Sync()
    {
        if (_source.State == SourceState.Off || _source.IsRateLimited)
        {
            _registration?.Dispose();
            _registration = null;
        }
        else
        {
            _registration ??= _source.Loop.Poller.Register(Fd, (ulong)_source.Id, _interest);
        }
    }

    /// <summary>Deregisters and closes, as the source goes.</summary>
    public void Close()
    {
        _registration?.Dispose();
        _registration = null;
        LibC.CloseQuietly(Fd);
    }
}
