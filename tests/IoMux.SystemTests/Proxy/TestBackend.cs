using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace IoMux.Tests.Proxy;

/// <summary>An in-process server the proxy relays to (TCP on loopback or a Unix socket), running one handler
/// per connection; handler failures are collected so a test can assert there were none. Every helper that waits
/// takes the test's token; without one (a handler, a caller outside this folder) it gives up after
/// <see cref="DefaultDeadline"/>, so no wait here is unbounded.</summary>
internal sealed class TestBackend : IDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Func<Socket, Task> _handler;
    private readonly Task _acceptLoop;
    private readonly string? _path;
    private readonly ConcurrentDictionary<Socket, bool> _open = new();
    private int _accepted;

    /// <summary>How long a helper waits when the caller passes no token of its own.</summary>
    public static readonly TimeSpan DefaultDeadline = TimeSpan.FromSeconds(60);

    public ConcurrentQueue<Exception> Failures { get; } = new();

    public int Accepted => Volatile.Read(ref _accepted);

    /// <summary>What to pass the proxy as its target.</summary>
    public string Target { get; }

    private TestBackend(Socket listener, string target, string? path, Func<Socket, Task> handler)
    {
        _listener = listener;
        _handler = handler;
        _path = path;
        Target = target;
        _acceptLoop = Task.Run(AcceptLoop);
    }

    public static TestBackend Tcp(Func<Socket, Task> handler, int port = 0)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
        listener.Listen(1024);
        return new TestBackend(listener, $"127.0.0.1:{((IPEndPoint)listener.LocalEndPoint!).Port}", null, handler);
    }

    /// <summary>On ::1, its target written as systemd-socket-proxyd takes it (<c>::1:PORT</c>, split at the last colon).</summary>
    public static TestBackend TcpIPv6(Func<Socket, Task> handler)
    {
        var listener = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        listener.Listen(1024);
        return new TestBackend(listener, $"::1:{((IPEndPoint)listener.LocalEndPoint!).Port}", null, handler);
    }

    public static TestBackend Unix(Func<Socket, Task> handler)
    {
        var path = Path.Combine(Path.GetTempPath(), $"iomux-proxy-test-{Guid.NewGuid():N}.sock");
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1024);
        return new TestBackend(listener, path, path, handler);
    }

    /// <summary>A listener in Linux's abstract namespace (sun_path starting with a NUL byte, no file), which the
    /// proxy's target names <c>@name</c> as systemd-socket-proxyd's does.</summary>
    public static TestBackend Abstract(Func<Socket, Task> handler)
    {
        var name = $"iomux-proxy-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint("\0" + name));
        listener.Listen(1024);
        return new TestBackend(listener, "@" + name, null, handler);
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            Interlocked.Increment(ref _accepted);
            _open[connection] = true;
            _ = Task.Run(async () =>
            {
                try
                {
                    await _handler(connection);
                }
                catch (Exception e)
                {
                    Failures.Enqueue(e);
                }
                finally
                {
                    _open.TryRemove(connection, out _);
                    connection.Dispose();
                }
            });
        }
    }

    /// <summary>Echoes until end of stream, then shuts its own sending side (passing the half-close back).</summary>
    public static async Task Echo(Socket socket)
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
                break;
            await SendAll(socket, buffer.AsMemory(0, n));
        }
        socket.Shutdown(SocketShutdown.Send);
    }

    public static async Task SendAll(Socket socket, ReadOnlyMemory<byte> data, CancellationToken cancel = default)
    {
        using var bounded = Bounded(cancel);
        while (!data.IsEmpty)
        {
            int n = await socket.SendAsync(data, SocketFlags.None, bounded.Token);
            data = data[n..];
        }
    }

    /// <summary>The caller's token, or <see cref="DefaultDeadline"/> when it has none.</summary>
    private static CancellationTokenSource Bounded(CancellationToken cancel) =>
        cancel.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancel) : new CancellationTokenSource(DefaultDeadline);

    /// <summary>Reads until <paramref name="count"/> bytes arrived (or end of stream); returns how many did.</summary>
    public static async Task<long> ReceiveExactly(Socket socket, long count, CancellationToken cancel = default)
    {
        using var bounded = Bounded(cancel);
        var buffer = new byte[256 * 1024];
        long total = 0;
        while (total < count)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, count - total)), SocketFlags.None, bounded.Token);
            if (n == 0)
                break;
            total += n;
        }
        return total;
    }

    /// <summary>Reads to end of stream, hashing; returns the byte count and SHA-256.</summary>
    public static async Task<(long Bytes, string Sha256)> ReceiveAll(Socket socket, CancellationToken cancel = default)
    {
        using var bounded = Bounded(cancel);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[256 * 1024];
        long total = 0;
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, bounded.Token);
            if (n == 0)
                return (total, Convert.ToHexString(hash.GetHashAndReset()));
            hash.AppendData(buffer, 0, n);
            total += n;
        }
    }

    /// <summary>Sends <paramref name="length"/> pseudo-random bytes (the same for the same seed); returns their SHA-256.</summary>
    public static async Task<string> SendPattern(Socket socket, long length, int seed, CancellationToken cancel = default)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(seed);
        var block = new byte[1 << 20];
        for (long sent = 0; sent < length;)
        {
            int chunk = (int)Math.Min(block.Length, length - sent);
            random.NextBytes(block.AsSpan(0, chunk));
            hash.AppendData(block, 0, chunk);
            await SendAll(socket, block.AsMemory(0, chunk), cancel);
            sent += chunk;
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        // Handlers still waiting on a connection (a stalled backend, an echo whose client never closed) end now.
        foreach (var connection in _open.Keys)
            connection.Dispose();
        try
        {
            _acceptLoop.Wait(5000);
        }
        catch (AggregateException)
        {
        }
        if (_path is not null)
            File.Delete(_path);
    }
}
