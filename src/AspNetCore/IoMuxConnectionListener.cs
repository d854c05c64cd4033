using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using IoMux.Interop;
using IoMux.Loop;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace IoMux.AspNetCore;

/// <summary>
/// One bound endpoint. Every loop of the group watches the listening socket (with <see cref="Interest.Exclusive"/>,
/// so on epoll one loop wakes per connection instead of all: the herd and its cure are measured in
/// SharedListenerTests) and accepts on its own thread; a connection stays on the loop that accepted it. Accepted
/// connections queue for Kestrel's <see cref="AcceptAsync"/>.
/// </summary>
internal sealed class IoMuxConnectionListener : IConnectionListener
{
    private readonly Socket _socket;
    private readonly LoopGroup _loops;
    private readonly IoMuxTransportOptions _options;
    private readonly ILogger _logger;
    private readonly Channel<IoMuxConnection> _accepted = Channel.CreateUnbounded<IoMuxConnection>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = false });
    private readonly IoSource?[] _sources;
    private readonly PinnedBlockMemoryPool _pool = new();
    private int _unbound;
    private long _nextId;

    public IoMuxConnectionListener(Socket socket, LoopGroup loops, IoMuxTransportOptions options, ILogger logger)
    {
        _socket = socket;
        _loops = loops;
        _options = options;
        _logger = logger;
        EndPoint = socket.LocalEndPoint ?? new IPEndPoint(IPAddress.None, 0);
        _sources = new IoSource?[loops.Count];
        int fd = (int)socket.Handle;
        for (int i = 0; i < loops.Count; i++)
        {
            int index = i;
            var loop = loops[i];
            loop.Run(() =>
            {
                if (Volatile.Read(ref _unbound) == 0)
                    _sources[index] = loop.Loop.AddIo(fd, Interest.Readable | Interest.Exclusive, (_, _) => AcceptAll(loop), TriggerMode.Level, description: $"listener {EndPoint}");
            });
        }
    }

    public EndPoint EndPoint { get; }

    /// <summary>On a loop thread: accepts until would-block; each connection starts on this loop.</summary>
    private void AcceptAll(LoopThread loop)
    {
        for (int i = 0; i < 64; i++) // bounded, so one busy listener cannot starve the loop's connections
        {
            int fd = Accept((int)_socket.Handle, out int errno);
            if (fd < 0)
            {
                if (errno == Errno.EAGAIN || errno == Errno.EINTR || errno == Errno.ECONNABORTED)
                    return;
                // EMFILE, ENFILE, ENOBUFS: the connection stays queued in the kernel; level mode reports it again.
                _logger.LogWarning("IoMux transport: accept on {EndPoint} failed: {Error}", EndPoint, Errno.Name(errno));
                return;
            }
            IoMuxConnection connection;
            try
            {
                var socket = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
                if (socket.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
                    socket.NoDelay = true;
                connection = new IoMuxConnection(socket, loop, _options, _pool, $"iomux-{Interlocked.Increment(ref _nextId):x}");
            }
            catch (Exception e)
            {
                LibC.CloseQuietly(fd);
                _logger.LogWarning(e, "IoMux transport: could not start an accepted connection");
                continue;
            }
            connection.Start();
            if (!_accepted.Writer.TryWrite(connection))
                _ = connection.DisposeAsync();
        }
    }

    private static unsafe int Accept(int listener, out int errno)
    {
        const int SOCK_NONBLOCK_LINUX = 0x800, SOCK_CLOEXEC_LINUX = 0x80000;
        int fd = OperatingSystem.IsLinux()
            ? LibC.accept4(listener, null, null, SOCK_NONBLOCK_LINUX | SOCK_CLOEXEC_LINUX)
            : LibC.accept(listener, null, null);
        errno = fd < 0 ? Errno.Last : 0;
        if (fd >= 0 && !OperatingSystem.IsLinux())
            LibC.SetNonBlockingCloseOnExec(fd);
        return fd;
    }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    /// <summary>Stops accepting: every loop stops watching the listener, the socket closes, AcceptAsync returns null.</summary>
    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _unbound, 1) != 0)
            return ValueTask.CompletedTask;
        var removed = new CountdownEvent(_loops.Count);
        for (int i = 0; i < _loops.Count; i++)
        {
            int index = i;
            _loops[i].Run(() =>
            {
                _sources[index]?.Dispose();
                _sources[index] = null;
                removed.Signal();
            });
        }
        return Finish();

        async ValueTask Finish()
        {
            // Off the loops before the number is released, so no loop watches a closed (or reused) descriptor.
            await Task.Run(() => removed.Wait(TimeSpan.FromSeconds(10)), cancellationToken).ConfigureAwait(false);
            removed.Dispose();
            _socket.Dispose();
            if (EndPoint is UnixDomainSocketEndPoint unix && unix.ToString() is { Length: > 0 } path && path[0] != '@' && !path.StartsWith('\0'))
                File.Delete(path);
            _accepted.Writer.TryComplete();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await UnbindAsync().ConfigureAwait(false);
        while (_accepted.Reader.TryRead(out var connection))
            await connection.DisposeAsync().ConfigureAwait(false);
    }
}
