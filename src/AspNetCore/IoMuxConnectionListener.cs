using System.Buffers;
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
    private readonly TimerSource?[] _resumes; // per loop: accepting paused at a descriptor shortage, until this fires
    private readonly MemoryPool<byte> _pool; // disposed with the listener: a factory's pool then leaves its eviction list
    private readonly TransportDescriptors _descriptors;
    private readonly ILogger _connectionLogger;
    private readonly Action<TimerSource>[] _resume;
    private int _unbound;
    private readonly bool _ownsSocketFile; // a Unix socket path this listener bound (deleted at unbind); not a passed handle's
    private int _shortage; // 1 while some loop of this listener is paused (logged once per episode)

    /// <summary>How long a loop stops accepting after a descriptor shortage before it looks again (IoMux.Web's
    /// AcceptGate.PauseTime).</summary>
    internal static readonly TimeSpan PauseTime = TimeSpan.FromMilliseconds(100);

    /// <summary>The pause's reason when the budget stopped accepting (errno names otherwise: EMFILE when accept(2)
    /// itself ran out), so a log tells which of the two guards acted.</summary>
    internal const string BudgetSpent = "descriptor budget spent (the runtime's reserve left free)";

    public IoMuxConnectionListener(Socket socket, LoopGroup loops, IoMuxTransportOptions options, TransportDescriptors descriptors,
        MemoryPool<byte> pool, ILogger logger, ILogger connectionLogger, bool ownsSocketFile = false)
    {
        _socket = socket;
        _ownsSocketFile = ownsSocketFile;
        _pool = pool;
        _loops = loops;
        _options = options;
        _descriptors = descriptors;
        _logger = logger;
        _connectionLogger = connectionLogger;
        EndPoint = socket.LocalEndPoint ?? new IPEndPoint(IPAddress.None, 0);
        _sources = new IoSource?[loops.Count];
        _resumes = new TimerSource?[loops.Count];
        _resume = new Action<TimerSource>[loops.Count];
        for (int i = 0; i < loops.Count; i++)
        {
            int index = i;
            _resume[i] = _ => Resume(index);
        }
        int fd = (int)socket.Handle;
        for (int i = 0; i < loops.Count; i++)
        {
            int index = i;
            var loop = loops[i];
            loop.Run(() =>
            {
                if (Volatile.Read(ref _unbound) == 0)
                    _sources[index] = loop.Loop.AddIo(fd, Interest.Readable | Interest.Exclusive, (_, _) => AcceptAll(loop, index), TriggerMode.Level, description: $"listener {EndPoint}");
            });
        }
    }

    public EndPoint EndPoint { get; }

    /// <summary>On a loop thread: accepts until would-block; each connection starts on this loop. Out of
    /// descriptors (EMFILE, ENFILE, or the budget of <see cref="TransportDescriptors"/> spent) or memory (ENOBUFS,
    /// ENOMEM) the pending connection keeps the listener readable, so accepting again at once would spin the loop:
    /// this loop stops watching the listener for <see cref="PauseTime"/> at a time instead (the clients wait in the
    /// backlog), and the shortage is logged once per episode.</summary>
    private void AcceptAll(LoopThread loop, int index)
    {
        for (int i = 0; i < 64; i++) // bounded, so one busy listener cannot starve the loop's connections
        {
            if (!_descriptors.AllowsOneMore())
            {
                Pause(index, BudgetSpent); // before accept(2) could fail: the runtime's reserve stays free
                return;
            }
            int fd = Accept((int)_socket.Handle, out int errno);
            if (fd < 0)
            {
                if (errno == Errno.EAGAIN)
                    return;
                if (errno == Errno.EINTR || errno == Errno.ECONNABORTED)
                    continue; // a connection reset in the backlog: the next one may be there
                if (errno != Errno.EMFILE && errno != Errno.ENFILE && errno != Errno.ENOBUFS && errno != Errno.ENOMEM
                    && Volatile.Read(ref _shortage) == 0)
                    TransportLog.AcceptFailed(_logger, EndPoint, Errno.Name(errno)); // once per episode
                // Any failure leaves the listener readable (a shortage's connection waits in the backlog; a listener
                // shut down behind the transport's back says EINVAL and HUP for good): accepting again at once would
                // spin the loop and log each time, so every failure pauses it, the unexpected ones too.
                Pause(index, Errno.Name(errno));
                if (errno == Errno.EMFILE || errno == Errno.ENFILE)
                    _descriptors.RanOut(); // the budget allowed this accept: its count was stale (after the pause gave the spares: listing needs a descriptor)
                return;
            }
            if (Volatile.Read(ref _shortage) != 0 && Interlocked.Exchange(ref _shortage, 0) != 0)
                TransportLog.AcceptResumed(_logger, EndPoint);
            IoMuxConnection connection;
            Socket? accepted = null;
            try
            {
                accepted = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
                if (_options.NoDelay && accepted.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
                    accepted.NoDelay = true;
                connection = new IoMuxConnection(accepted, loop, _options, _pool, ConnectionIds.Next(), _descriptors, _connectionLogger);
                // In the try: a registration the backend refuses (select: a descriptor at or above FD_SETSIZE; a full
                // poll set; ENOMEM from epoll_ctl) must close this socket, not leak it and throw out of the loop's
                // callback (which stopped the loop for good).
                connection.Start();
            }
            catch (Exception e)
            {
                if (accepted is null)
                    LibC.CloseQuietly(fd);
                else
                    accepted.Dispose();
                _logger.LogWarning(e, "IoMux transport: could not start an accepted connection");
                continue;
            }
            _descriptors.Opened();
            if (!_accepted.Writer.TryWrite(connection))
                _ = connection.DisposeAsync();
        }
    }

    /// <summary>On loop <paramref name="index"/>: stops watching the listener and looks again after <see cref="PauseTime"/>.</summary>
    private void Pause(int index, string reason)
    {
        if (Interlocked.Exchange(ref _shortage, 1) == 0)
            TransportLog.AcceptPaused(_logger, EndPoint, reason, (int)PauseTime.TotalMilliseconds);
        _descriptors.GiveSpares(); // free descriptors for the rest of the process while it is at its limit
        if (_sources[index] is { IsDisposed: false } source)
            source.State = SourceState.Off;
        _resumes[index]?.Dispose();
        _resumes[index] = _loops[index].Loop.AddTimer(PauseTime, _resume[index], accuracy: TimeSpan.FromMilliseconds(10), description: "accept pause");
    }

    /// <summary>On loop <paramref name="index"/>, <see cref="PauseTime"/> after a shortage: watches the listener
    /// again once the descriptors are there (a connection and the spares fit), else waits another round.</summary>
    private void Resume(int index)
    {
        _resumes[index]?.Dispose();
        _resumes[index] = null;
        if (_sources[index] is not { IsDisposed: false } source)
            return; // unbound meanwhile
        if (!_descriptors.TryResume())
        {
            _resumes[index] = _loops[index].Loop.AddTimer(PauseTime, _resume[index], accuracy: TimeSpan.FromMilliseconds(10), description: "accept pause");
            return;
        }
        source.State = SourceState.On;
    }

    // LibC.Accept: non-blocking and close-on-exec, the descriptor closed again if fcntl fails (this copy of accept4
    // leaked it until issue 25).
    private static unsafe int Accept(int listener, out int errno)
    {
        int fd = LibC.Accept(listener);
        errno = fd < 0 ? -fd : 0;
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
                _resumes[index]?.Dispose();
                _resumes[index] = null;
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
            // Only a path bound here: a socket the host passed (systemd's socket unit, FileHandleEndPoint) keeps its
            // file, which the service manager owns and a restarted app binds again.
            if (_ownsSocketFile && EndPoint is UnixDomainSocketEndPoint unix && unix.ToString() is { Length: > 0 } path && path[0] != '@' && !path.StartsWith('\0'))
                File.Delete(path);
            _accepted.Writer.TryComplete();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await UnbindAsync().ConfigureAwait(false);
        while (_accepted.Reader.TryRead(out var connection))
            await connection.DisposeAsync().ConfigureAwait(false);
        // As Kestrel's socket transport (its listener disposes its pool): blocks still out come back to a disposed
        // pool, which drops them.
        _pool.Dispose();
    }
}
