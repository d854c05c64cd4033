using System.Net;
using System.Net.Sockets;
using IoMux.Interop;

namespace IoMux.Web;

/// <summary>One listening socket per loop thread on the same address (SO_REUSEPORT): the kernel spreads new
/// connections across the group by a hash of the 4-tuple, so no thread sleeps on another's accept queue and
/// there is no thundering herd.</summary>
/// <remarks>The catch (the nginx talk's complaint): a connection is hashed to one member's queue when it
/// arrives, so closing a member resets the connections queued on it. Linux 5.14's answer is
/// <c>net.ipv4.tcp_migrate_req=1</c>: the kernel then moves a closing listener's queued (and half-open)
/// connections to another member. <see cref="Close"/> relies on it when it is on, and otherwise drains the
/// member (accepts what is queued) before closing it, which still loses what arrives in between.</remarks>
public sealed class ListenerGroup : IDisposable
{
    private readonly int[] _listeners;

    private ListenerGroup(IPEndPoint endpoint, int[] listeners)
    {
        Endpoint = endpoint;
        _listeners = listeners;
    }

    /// <summary>The address every member listens on (with the port the kernel chose when 0 was asked).</summary>
    public IPEndPoint Endpoint { get; }

    /// <summary>The members' descriptors (non-blocking); -1 for a closed member.</summary>
    public IReadOnlyList<int> Listeners => _listeners;

    /// <summary>Binds <paramref name="size"/> listeners to <paramref name="endpoint"/> with SO_REUSEPORT, after
    /// checking that nothing else listens there: SO_REUSEPORT alone would let a second server join a first one's
    /// group on the same port (the kernel allows it for the same user) and silently take a share of its
    /// connections. Two groups that start at the same instant can still both pass the check.</summary>
    /// <exception cref="PosixException">A bind failed (EADDRINUSE: something listens on the address already).</exception>
    /// <exception cref="PlatformNotSupportedException">More than one member on an OS without SO_REUSEPORT (illumos,
    /// Solaris): a group of one binds without it.</exception>
    public static ListenerGroup Bind(IPEndPoint endpoint, int size, int backlog = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (RefusalReason(size, Sockets.SO_REUSEPORT is not null, Platform.Flavor.ToString()) is { } reason)
            throw new PlatformNotSupportedException(reason);
        bool reusePort = Sockets.SO_REUSEPORT is not null;
        if (endpoint.Port != 0) // port 0: the kernel picks a free one
            Sockets.ThrowIfAddressInUse(endpoint);
        var listeners = new int[size];
        Array.Fill(listeners, -1);
        try
        {
            listeners[0] = Sockets.Listen(endpoint, backlog, reusePort);
            var bound = LocalEndpoint(listeners[0]);
            for (int i = 1; i < size; i++)
                listeners[i] = Sockets.Listen(bound, backlog, reusePort);
            return new ListenerGroup(bound, listeners);
        }
        catch
        {
            foreach (int fd in listeners)
                LibC.CloseQuietly(fd);
            throw;
        }
    }

    /// <summary>Why a group of <paramref name="size"/> cannot be made on <paramref name="os"/>, or null. Without
    /// SO_REUSEPORT a second bind to the address fails (EADDRINUSE), or, with the number another option has there
    /// (illumos's 0x200 is SO_DGRAM_ERRIND), silently means something else: so the group is refused up front.</summary>
    internal static string? RefusalReason(int size, bool hasReusePort, string os) =>
        size <= 1 || hasReusePort ? null
        : $"a listener group of {size} needs SO_REUSEPORT, which {os} does not have (illumos-gate usr/src/uts/common/sys/socket.h defines none); run one loop thread";

    /// <summary>net.ipv4.tcp_migrate_req in this network namespace: true, false, or null where the kernel has no
    /// such setting (before 5.14, or not Linux).</summary>
    public static bool? MigrationEnabled
    {
        get
        {
            try
            {
                return File.ReadAllText("/proc/sys/net/ipv4/tcp_migrate_req").Trim() == "1";
            }
            catch (IOException)
            {
                return null;
            }
            catch (UnauthorizedAccessException)
            {
                return null;
            }
        }
    }

    /// <summary>Closes member <paramref name="index"/>. With migration on, its queue moves to the other members
    /// and nothing is returned; otherwise the connections already queued on it are accepted first and returned
    /// (non-blocking descriptors, the caller's to serve), so that only those arriving during the close are lost.</summary>
    public IReadOnlyList<int> Close(int index)
    {
        int fd = _listeners[index];
        if (fd < 0)
            return [];
        var drained = new List<int>();
        if (MigrationEnabled != true)
        {
            for (int accepted; (accepted = LibC.Accept(fd)) >= 0;)
                drained.Add(accepted);
        }
        _listeners[index] = -1;
        LibC.CloseQuietly(fd);
        return drained;
    }

    private static IPEndPoint LocalEndpoint(int fd)
    {
        using var view = new Socket(new SafeSocketHandle(fd, ownsHandle: false));
        return (IPEndPoint)view.LocalEndPoint!;
    }

    /// <summary>Closes every member.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _listeners.Length; i++)
        {
            LibC.CloseQuietly(_listeners[i]);
            _listeners[i] = -1;
        }
    }
}
