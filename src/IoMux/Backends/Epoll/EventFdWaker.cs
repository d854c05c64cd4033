using IoMux.Interop;

namespace IoMux.Backends.Epoll;

/// <summary>
/// The epoll backend's wake channel: an eventfd registered edge-triggered. Each write produces a fresh
/// edge, so the waiter never has to read the counter back (one system call per wake, as libuv#4400 and
/// libevent#1619 do); the counter cannot realistically overflow (2^64 - 2 writes). Coalescing and the race
/// with disposal are <see cref="PollerBackend"/>'s.
/// </summary>
internal sealed unsafe class EventFdWaker : IDisposable
{
    public EventFdWaker(int epollFd)
    {
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

    /// <summary>EAGAIN would need 2^64 - 2 unread wakes.</summary>
    public void Write()
    {
        ulong one = 1;
        LibC.write(Descriptor, (byte*)&one, sizeof(ulong));
    }

    public void Dispose() => LibC.CloseQuietly(Descriptor);
}
