using IoMux.Interop;

namespace IoMux.Benchmarks;

/// <summary>Descriptors for benchmarks: eventfds that stay readable (one fd each, so 1 024 ready descriptors fit
/// under select's FD_SETSIZE only for small N), socketpairs for the chain shape.</summary>
internal static unsafe partial class Fixtures
{
    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int eventfd(uint initval, int flags);

    /// <summary>An eventfd whose counter is 1: readable until read, which nobody does.</summary>
    public static int ReadyEventFd()
    {
        int fd = eventfd(1, 0x80000 | 0x800); // EFD_CLOEXEC | EFD_NONBLOCK
        if (fd < 0)
            throw Errno.Fail("eventfd");
        return fd;
    }

    public static (int Read, int Write) SocketPair()
    {
        int* fds = stackalloc int[2];
        if (LibC.socketpair(1, 1, 0, fds) != 0)
            throw Errno.Fail("socketpair");
        LibC.SetNonBlockingCloseOnExec(fds[0]);
        LibC.SetNonBlockingCloseOnExec(fds[1]);
        return (fds[0], fds[1]);
    }

    internal static PollerBackend Backend(string name) =>
        (BackendCatalog.Find(name) ?? throw new ArgumentException($"unknown backend {name}")).Create();

    public static void Close(IEnumerable<int> fds)
    {
        foreach (var fd in fds)
            LibC.close(fd);
    }
}
