using System.Runtime.InteropServices;

// Linked into the assemblies that serve (IoMux.Web, iomux-socket-proxyd), not into Core: app-level interop is not
// part of the poller. Each gets its own internal copy (docs/API-REVIEW.md, "One interop home").
namespace IoMux.Interop;

/// <summary>The socket and splice calls of the proxy and the web building blocks, beyond <c>LibC</c>. Constants are per OS:
/// Linux numbers its socket options differently from the BSDs and illumos, and only Linux has splice,
/// accept4's flag arguments everywhere, and F_SETPIPE_SZ.</summary>
internal static unsafe partial class Sockets
{
    private static readonly bool Linux = OperatingSystem.IsLinux();

    public const int AF_UNIX = 1, AF_INET = 2;
    /// <summary><c>OsAbi.AfInet6</c>.</summary>
    public static readonly int AF_INET6 = OsAbi.AfInet6(Platform.Flavor);
    /// <summary><c>OsAbi.SockStream</c> (2 on illumos, which kept SVR4's numbering).</summary>
    public static readonly int SOCK_STREAM = OsAbi.SockStream(Platform.Flavor);
    /// <summary><c>OsAbi.SolSocket</c>.</summary>
    public static readonly int SOL_SOCKET = OsAbi.SolSocket(Platform.Flavor);
    public static readonly int SO_REUSEADDR = Linux ? 2 : 0x4;
    /// <summary>The option a listener group sets (<c>OsAbi.SoReusePort</c>), or null where the OS has none (illumos).
    /// Linux balances connections across a SO_REUSEPORT group; FreeBSD balances only with SO_REUSEPORT_LB (0x10000),
    /// its SO_REUSEPORT (0x200) just allows the second bind, as macOS's does.</summary>
    public static readonly int? SO_REUSEPORT = OsAbi.SoReusePort(Platform.Flavor);
    /// <summary><c>OsAbi.SoType</c>.</summary>
    public static readonly int SO_TYPE = OsAbi.SoType(Platform.Flavor);
    public static readonly int SO_ERROR = Linux ? 4 : 0x1007;
    public static readonly int SO_LINGER = Linux ? 13 : 0x80;
    public static readonly int SO_ACCEPTCONN = Linux ? 30 : 0x2;
    public const int SHUT_RD = 0, SHUT_WR = 1;
    public const int IPPROTO_TCP = 6, TCP_NODELAY = 1;

    // Linux only (SOCK_NONBLOCK and SOCK_CLOEXEC, pipe2's flags: LibC.O_NONBLOCK_LINUX, LibC.O_CLOEXEC_LINUX).
    public const int F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032;
    public const uint SPLICE_F_MOVE = 1, SPLICE_F_NONBLOCK = 2;

    /// <summary>send(2) flag (Linux): more data follows, hold the segment (a response head before its sendfile body).</summary>
    public const int MSG_MORE = 0x8000;

    [LibraryImport("libc", SetLastError = true)] public static partial nint send(int fd, byte* buffer, nuint length, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int socket(int domain, int type, int protocol);
    [LibraryImport("libc", SetLastError = true)] public static partial int connect(int fd, byte* address, uint length);
    [LibraryImport("libc", SetLastError = true)] public static partial int bind(int fd, byte* address, uint length);
    [LibraryImport("libc", SetLastError = true)] public static partial int listen(int fd, int backlog);
    [LibraryImport("libc", SetLastError = true)] public static partial int setsockopt(int fd, int level, int option, void* value, uint length);
    [LibraryImport("libc", SetLastError = true)] public static partial int pipe2(int* fds, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial nint splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint length, uint flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int unsetenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name);
    [LibraryImport("libc", SetLastError = true)] public static partial int getpid();

    /// <summary>An int-valued socket option, or -errno.</summary>
    public static int GetIntOption(int fd, int level, int option)
    {
        int value = 0;
        uint length = sizeof(int);
        return LibC.getsockopt(fd, level, option, &value, &length) == 0 ? value : -Errno.Last;
    }

    public static void SetIntOption(int fd, int level, int option, int value) =>
        setsockopt(fd, level, option, &value, sizeof(int));

    /// <summary>Makes close() send a reset instead of a FIN: how a reset on one side is passed to the other.</summary>
    public static void SetAbortiveClose(int fd)
    {
        int* linger = stackalloc int[2] { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, 2 * sizeof(int));
    }

    /// <summary>A non-blocking, close-on-exec stream socket.</summary>
    public static int OpenStreamSocket(int family)
    {
        int fd = Linux
            ? socket(family, SOCK_STREAM | LibC.O_NONBLOCK_LINUX | LibC.O_CLOEXEC_LINUX, 0)
            : socket(family, SOCK_STREAM, 0);
        if (fd < 0)
            throw Errno.Fail("socket");
        if (!Linux)
            LibC.SetNonBlockingCloseOnExecOrClose(fd);
        return fd;
    }

    /// <summary>The address family a <see cref="System.Net.SocketAddress"/> holds, in this OS's numbering
    /// (.NET serializes endpoints in the native sockaddr layout: sa_len first on the BSDs).</summary>
    public static int NativeFamily(System.Net.EndPoint endpoint) => endpoint.AddressFamily switch
    {
        System.Net.Sockets.AddressFamily.InterNetwork => AF_INET,
        System.Net.Sockets.AddressFamily.InterNetworkV6 => AF_INET6,
        System.Net.Sockets.AddressFamily.Unix => AF_UNIX,
        var other => throw new NotSupportedException($"address family {other}"),
    };

    /// <summary>A non-blocking listening socket on <paramref name="endpoint"/>; SO_REUSEADDR for TCP, and
    /// <see cref="SO_REUSEPORT"/> when <paramref name="reusePort"/> (one member of a listener group).</summary>
    /// <exception cref="PosixException">socket, setsockopt, bind or listen failed (EADDRINUSE...).</exception>
    public static int Listen(System.Net.EndPoint endpoint, int backlog, bool reusePort = false)
    {
        int fd = OpenStreamSocket(NativeFamily(endpoint));
        try
        {
            if (endpoint is System.Net.IPEndPoint)
                SetIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
            int one = 1;
            if (reusePort)
            {
                int option = SO_REUSEPORT ?? throw new PlatformNotSupportedException($"{Platform.Flavor} has no SO_REUSEPORT");
                if (setsockopt(fd, SOL_SOCKET, option, &one, sizeof(int)) != 0)
                    throw Errno.Fail("setsockopt", "SO_REUSEPORT");
            }
            Bind(fd, endpoint);
            if (listen(fd, backlog) != 0)
                throw Errno.Fail("listen", endpoint.ToString());
            return fd;
        }
        catch
        {
            LibC.CloseQuietly(fd);
            throw;
        }
    }

    /// <summary>Binds a probe socket without SO_REUSEPORT to <paramref name="endpoint"/> and closes it again, so
    /// that anything listening there answers EADDRINUSE: also a SO_REUSEPORT group of the same user, which a
    /// <c>reusePort</c> bind would join in silence and take a share of its connections. SO_REUSEADDR as
    /// <see cref="Listen"/> sets it: what lingers in TIME_WAIT does not count as a holder.</summary>
    /// <exception cref="PosixException">bind failed: EADDRINUSE, EACCES, EADDRNOTAVAIL...</exception>
    public static void ThrowIfAddressInUse(System.Net.IPEndPoint endpoint)
    {
        int fd = OpenStreamSocket(NativeFamily(endpoint));
        try
        {
            SetIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
            Bind(fd, endpoint);
        }
        finally
        {
            LibC.CloseQuietly(fd);
        }
    }

    private static void Bind(int fd, System.Net.EndPoint endpoint)
    {
        var sockaddr = endpoint.Serialize();
        fixed (byte* buffer = sockaddr.Buffer.Span)
        {
            if (bind(fd, buffer, (uint)sockaddr.Size) != 0)
                throw Errno.Fail("bind", endpoint.ToString());
        }
    }
}
