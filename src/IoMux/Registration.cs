using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using IoMux.Interop;

namespace IoMux;

/// <summary>The result of a registration-level I/O helper.</summary>
public enum IoOutcome
{
    /// <summary>Bytes moved (or a connection was accepted).</summary>
    Completed,
    /// <summary>The call would block; the registration is armed again for that direction.</summary>
    WouldBlock,
    /// <summary>A read returned 0: the peer closed its writing side.</summary>
    EndOfStream,
    /// <summary>The peer reset the connection (ECONNRESET): it is gone, nothing more can be read or written.
    /// Reported as a value, as <c>Socket.Receive(..., out SocketError)</c> reports <c>SocketError.ConnectionReset</c>,
    /// because a peer that goes away is an everyday event for a server, not an exception.</summary>
    ConnectionReset,
    /// <summary>A write found the reading side gone (EPIPE: the peer closed, or this side shut writing). No byte
    /// was written; nothing more can be. (The runtime ignores SIGPIPE, so the process is not killed.)</summary>
    BrokenPipe,
}

/// <summary>
/// One descriptor registered with a <see cref="Poller"/>. Dispose it to deregister (before closing a raw
/// descriptor). Its I/O helpers read, write and accept without blocking and, when they hit would-block, tell
/// the poller, so an edge registration on a backend that emulates edge mode never misses a wakeup. Consumers
/// that do their own I/O call <see cref="NotifyWouldBlock"/> instead.
/// </summary>
public sealed unsafe class Registration : IDisposable
{
    private readonly Poller _poller;
    private readonly SafeHandle? _handle;
    private volatile bool _active = true;
    private bool _emulatedEdge;

    internal Registration(Poller poller, int fd, ulong token, Interest interest, TriggerMode mode, SafeHandle? handle)
    {
        _poller = poller;
        Descriptor = fd;
        Token = token;
        _handle = handle;
        Update(interest, mode);
    }

    /// <summary>The descriptor number.</summary>
    public int Descriptor { get; }

    /// <summary>The caller's token, returned in every event of this registration.</summary>
    public ulong Token { get; }

    /// <summary>The directions currently watched.</summary>
    public Interest Interest { get; private set; }

    /// <summary>The current trigger mode.</summary>
    public TriggerMode Mode { get; private set; }

    /// <summary>False once disposed (or once the poller was disposed).</summary>
    public bool IsActive => _active;

    internal void Update(Interest interest, TriggerMode mode)
    {
        Interest = interest;
        Mode = mode;
        _emulatedEdge = mode == TriggerMode.Edge && !_poller.Capabilities.NativeEdge;
    }

    /// <summary>Changes the watched directions and mode; also re-arms a oneshot registration and every
    /// direction of an edge registration.</summary>
    public void Modify(Interest interest, TriggerMode mode) => _poller.Modify(this, interest, mode);

    /// <summary>Changes the watched directions, keeping the mode.</summary>
    public void Modify(Interest interest) => _poller.Modify(this, interest, Mode);

    /// <summary>Re-arms a oneshot registration with its current interest.</summary>
    public void Rearm() => _poller.Modify(this, Interest, Mode);

    /// <summary>For consumers that do their own I/O: call when a read (<see cref="Interest.Readable"/>) or a
    /// write (<see cref="Interest.Writable"/>) returned EAGAIN. Cheap and harmless on every mode and backend.</summary>
    public void NotifyWouldBlock(Interest directions)
    {
        if (_emulatedEdge)
            _poller.NotifyWouldBlock(this, directions);
    }

    /// <summary>Reads without blocking. Returns <see cref="IoOutcome.Completed"/> with the byte count,
    /// <see cref="IoOutcome.EndOfStream"/> at end of stream, <see cref="IoOutcome.WouldBlock"/> (re-arming), or
    /// <see cref="IoOutcome.ConnectionReset"/> when the peer reset the connection (ECONNRESET).</summary>
    /// <exception cref="PosixException">read(2) failed otherwise, e.g. ETIMEDOUT or EBADF.</exception>
    public IoOutcome Read(Span<byte> buffer, out int bytesRead)
    {
        bool entered = Enter();
        try
        {
            return ReadCore(buffer, out bytesRead);
        }
        finally
        {
            Exit(entered);
        }
    }

    private IoOutcome ReadCore(Span<byte> buffer, out int bytesRead)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                nint n = LibC.read(Descriptor, p, (nuint)buffer.Length);
                if (n >= 0)
                {
                    bytesRead = (int)n;
                    return n > 0 || buffer.IsEmpty ? IoOutcome.Completed : IoOutcome.EndOfStream;
                }
                int errno = Errno.Last;
                if (errno == Errno.EINTR)
                    continue;
                bytesRead = 0;
                if (errno == Errno.EAGAIN)
                {
                    NotifyWouldBlock(Interest.Readable);
                    return IoOutcome.WouldBlock;
                }
                if (errno == Errno.ECONNRESET)
                    return IoOutcome.ConnectionReset;
                throw new PosixException("read", errno, $"fd {Descriptor}");
            }
        }
    }

    /// <summary>Writes without blocking; may write fewer bytes than given. Returns <see cref="IoOutcome.Completed"/>
    /// with the count, <see cref="IoOutcome.WouldBlock"/> (re-arming) when the buffer is full,
    /// <see cref="IoOutcome.BrokenPipe"/> when the reader is gone (EPIPE) or <see cref="IoOutcome.ConnectionReset"/>
    /// when the peer reset the connection (ECONNRESET); no byte was written in the last three.</summary>
    /// <exception cref="PosixException">write(2) failed otherwise, e.g. EBADF.</exception>
    public IoOutcome Write(ReadOnlySpan<byte> data, out int bytesWritten)
    {
        bool entered = Enter();
        try
        {
            return WriteCore(data, out bytesWritten);
        }
        finally
        {
            Exit(entered);
        }
    }

    private IoOutcome WriteCore(ReadOnlySpan<byte> data, out int bytesWritten)
    {
        fixed (byte* p = data)
        {
            while (true)
            {
                nint n = LibC.write(Descriptor, p, (nuint)data.Length);
                if (n >= 0)
                {
                    bytesWritten = (int)n;
                    return IoOutcome.Completed;
                }
                int errno = Errno.Last;
                if (errno == Errno.EINTR)
                    continue;
                bytesWritten = 0;
                if (errno == Errno.EAGAIN)
                {
                    NotifyWouldBlock(Interest.Writable);
                    return IoOutcome.WouldBlock;
                }
                if (errno == Errno.EPIPE)
                    return IoOutcome.BrokenPipe;
                if (errno == Errno.ECONNRESET)
                    return IoOutcome.ConnectionReset;
                throw new PosixException("write", errno, $"fd {Descriptor}");
            }
        }
    }

    /// <summary>Accepts one pending connection on a listening socket, non-blocking and close-on-exec.
    /// Returns <see cref="IoOutcome.WouldBlock"/> (re-arming) when none is pending. A connection that was reset
    /// before it could be accepted (ECONNABORTED) is skipped, as accept(2) advises. The connection is a
    /// <see cref="SafeFileHandle"/> on purpose, not a <see cref="SafeSocketHandle"/>: disposing a SafeSocketHandle that
    /// no <see cref="Socket"/> owns closes abortively (the peer reads a reset, not end of stream), and a server that
    /// registers and closes the handle itself wants close(2). Wrap it in a <see cref="Socket"/> only when one is
    /// needed (<c>new Socket(new SafeSocketHandle(connection.DangerousGetHandle(), true))</c> after
    /// <c>connection.SetHandleAsInvalid()</c>).</summary>
    /// <exception cref="PosixException">accept failed, e.g. EMFILE when the process is out of descriptors
    /// (the pending connection stays queued: stop accepting for a while).</exception>
    public IoOutcome Accept(out SafeFileHandle? connection)
    {
        bool entered = Enter();
        try
        {
            return AcceptCore(out connection, null, 0, out _);
        }
        finally
        {
            Exit(entered);
        }
    }

    /// <summary>As <see cref="Accept(out SafeFileHandle?)"/>, and writes the peer's address into
    /// <paramref name="peerAddress"/> (its <see cref="SocketAddress.Size"/> set to the address's length), without
    /// allocating. Make it once for the listener's family (<c>new SocketAddress(AddressFamily.InterNetworkV6)</c>,
    /// or <see cref="AddressFamily.Unix"/> for a Unix socket) and reuse it; turn it into an endpoint with
    /// <c>IPEndPoint.Create</c> when one is needed. Its size is left alone when nothing was accepted.</summary>
    /// <exception cref="ArgumentException"><paramref name="peerAddress"/> is too small for the peer's address
    /// (the connection that was accepted is closed, not leaked).</exception>
    /// <exception cref="PosixException">accept failed, e.g. EMFILE.</exception>
    public IoOutcome Accept(SocketAddress peerAddress, out SafeFileHandle? connection)
    {
        ArgumentNullException.ThrowIfNull(peerAddress);
        var buffer = peerAddress.Buffer.Span;
        bool entered = Enter();
        try
        {
            fixed (byte* address = buffer)
            {
                var outcome = AcceptCore(out connection, address, (uint)buffer.Length, out uint length);
                if (outcome != IoOutcome.Completed)
                    return outcome;
                if (length > (uint)buffer.Length)
                {
                    connection!.Dispose();
                    connection = null;
                    throw new ArgumentException($"The peer's address needs {length} bytes; the SocketAddress given has {buffer.Length}. Make it for the listener's address family.", nameof(peerAddress));
                }
                peerAddress.Size = (int)length;
                return outcome;
            }
        }
        finally
        {
            Exit(entered);
        }
    }

    /// <summary>As <see cref="Accept(out SafeFileHandle?)"/>, and returns the peer's address: an
    /// <see cref="IPEndPoint"/> for TCP, a <see cref="UnixDomainSocketEndPoint"/> for a Unix socket (its path
    /// empty when the peer is unnamed). Allocates the endpoint; the <see cref="SocketAddress"/> overload does not.</summary>
    /// <exception cref="PosixException">accept failed, e.g. EMFILE.</exception>
    public IoOutcome Accept(out SafeFileHandle? connection, out EndPoint? peer)
    {
        var address = new SocketAddress(AddressFamily.Unix, PeerAddressCapacity);
        var outcome = Accept(address, out connection);
        peer = outcome == IoOutcome.Completed ? ToEndPoint(address) : null;
        return outcome;
    }

    /// <summary>Room for any address accept(2) reports for a stream socket here (sockaddr_storage is 128 bytes
    /// on Linux, the BSDs, macOS and illumos).</summary>
    private const int PeerAddressCapacity = 128;

    private static EndPoint? ToEndPoint(SocketAddress address) => address.Family switch
    {
        AddressFamily.InterNetwork => new IPEndPoint(IPAddress.Any, 0).Create(address),
        AddressFamily.InterNetworkV6 => new IPEndPoint(IPAddress.IPv6Any, 0).Create(address),
        AddressFamily.Unix => UnixEndPointTemplate.Create(address),
        _ => null,
    };

    // Create() makes a new endpoint from the address; the template's own path is never used.
    private static readonly UnixDomainSocketEndPoint UnixEndPointTemplate = new(" ");

    private IoOutcome AcceptCore(out SafeFileHandle? connection, byte* address, uint capacity, out uint addressLength)
    {
        while (true)
        {
            uint length = capacity;
            uint* lengthPointer = address is null ? null : &length;
            int fd = LibC.Accept(Descriptor, address, lengthPointer); // non-blocking, close-on-exec; closed if fcntl fails
            if (fd >= 0)
            {
                addressLength = length;
                connection = new SafeFileHandle(fd, ownsHandle: true);
                return IoOutcome.Completed;
            }
            int errno = -fd;
            if (errno == Errno.EINTR || errno == Errno.ECONNABORTED)
                continue;
            connection = null;
            addressLength = 0;
            if (errno == Errno.EAGAIN)
            {
                NotifyWouldBlock(Interest.Readable);
                return IoOutcome.WouldBlock;
            }
            throw new PosixException("accept", errno, $"fd {Descriptor}");
        }
    }

    /// <summary>Deregisters (before releasing a held handle). Idempotent.</summary>
    public void Dispose() => _poller.Deregister(this, closing: false);

    /// <summary>Deregisters a descriptor that the caller closes right after (or whose handle it disposes), which no
    /// other descriptor refers to (no dup, no child process holding it). epoll then leaves the removal to the close
    /// and saves its epoll_ctl; the other backends deregister as <see cref="Dispose"/> does. Broken, the promise
    /// costs no correctness: a registration kept alive by a dup is dropped on the wait path like any stale one
    /// (docs/SEMANTICS.md, F11b). Idempotent.</summary>
    public void DisposeBeforeClose() => _poller.Deregister(this, closing: true);

    /// <summary>Deregistered, or the poller was disposed: the registration reports and does nothing more.</summary>
    internal void Retire()
    {
        _active = false;
    }

    /// <summary>Keeps the registered handle open for one I/O call (its number must not be closed and reused
    /// under the call); false when there is no handle.</summary>
    /// <exception cref="ObjectDisposedException">The handle was closed.</exception>
    internal bool Enter()
    {
        if (_handle is null)
            return false;
        bool added = false;
        _handle.DangerousAddRef(ref added);
        return added;
    }

    /// <summary>Ends what <see cref="Enter"/> began.</summary>
    internal void Exit(bool entered)
    {
        if (entered)
            _handle!.DangerousRelease();
    }

    /// <inheritdoc />
    public override string ToString() => $"Registration(fd {Descriptor}, token {Token}, {Interest}, {Mode}{(IsActive ? "" : ", disposed")})";
}
