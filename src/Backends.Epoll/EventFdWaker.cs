using IoMux.Interop;

namespace IoMux.Backends.Epoll;

/// <summary>
/// The epoll backend's wake channel: an eventfd registered edge-triggered. Each write produces a fresh
/// edge, so the waiter never has to read the counter back (one system call per wake, as libuv#4400 and
/// libevent#1619 do); the counter cannot realistically overflow (2^64 - 2 writes).
/// </summary>
internal sealed unsafe class EventFdWaker : IDisposable
{
    private readonly WakeGate _gate = new();
    private readonly BackendCounters _counters;

    public EventFdWaker(int epollFd, BackendCounters counters)
    {
        _counters = counters;
        Descriptor = EpollInterop.eventfd(0, EpollInterop.EFD_CLOEXEC | EpollInterop.EFD_NONBLOCK);
        if (Descriptor < 0)
            throw Errno.Fail("eventfd");
        byte* ev = stackalloc byte[16];
        EpollInterop.WriteEvent(ev, EpollInterop.EPOLLIN | EpollInterop.EPOLLET, DescriptorTable.WakeData);
        if (EpollInterop.epoll_ctl(epollFd, EpollInterop.EPOLL_CTL_ADD, Descriptor, ev) != 0)
        {
            var error = Errno.Fail("epoll_ctl(ADD, eventfd)");
            LibC.CloseQuietly(Descriptor);
            throw error;
        }
    }

    public int Descriptor { get; }

    public WakeGate Gate => _gate;

    private readonly CloseGuard _closeGuard = new();

    public void Wake()
    {
        if (!_gate.Request() || !_closeGuard.TryEnter())
            return;
        try
        {
            ulong one = 1;
            // EAGAIN would need 2^64 - 2 unread wakes.
            LibC.write(Descriptor, (byte*)&one, sizeof(ulong));
            _counters.OnWakeWrite();
        }
        finally
        {
            _closeGuard.Exit();
        }
    }

    public void Dispose()
    {
        // A waker racing with disposal must not write into a descriptor number that was closed and reused.
        if (_closeGuard.Close())
            LibC.CloseQuietly(Descriptor);
    }
}
