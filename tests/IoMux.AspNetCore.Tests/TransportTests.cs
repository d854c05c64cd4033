using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// Real ASP.NET Core apps on the IoMux transport, on every Linux backend and over the kqueue and ports models, with
/// Kestrel's own socket transport as the reference running the same tests ("kestrel-sockets"): what it does, the
/// IoMux transport must do too.
/// </summary>
[TestFixtureSource(typeof(TransportTarget), nameof(TransportTarget.All))]
[NonParallelizable]
public sealed class TransportTests(TransportTarget target)
{
    [OneTimeSetUp]
    public void Supported()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    private static HttpClient Client(TestApp app, int connections = 16) => new(new SocketsHttpHandler { MaxConnectionsPerServer = connections, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
    {
        BaseAddress = app.BaseAddress,
        Timeout = TimeSpan.FromSeconds(60),
    };

    [Test, CancelAfter(60_000)]
    public async Task MinimalApiGetAndPost(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var client = Client(app);
        Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
        var body = Encoding.UTF8.GetBytes(new string('x', 100_000));
        using var response = await client.PostAsync("/echo", new ByteArrayContent(body), token);
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await response.Content.ReadAsByteArrayAsync(token), Is.EqualTo(body));
    }

    [Test, CancelAfter(60_000)]
    public async Task TheAppSeesTheConnectionsEndpointsAndId(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        var local = (IPEndPoint)socket.LocalEndPoint!;
        await socket.SendAsync(Encoding.ASCII.GetBytes("GET /whoami HTTP/1.0\r\nHost: x\r\n\r\n"), token);
        var text = await ReadToEndAsync(socket, token);
        var body = text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..].Split(' ');
        Assert.That(body[0], Is.EqualTo($"127.0.0.1:{local.Port}"), "remote endpoint: the client's");
        Assert.That(body[1], Is.EqualTo($"127.0.0.1:{app.Port}"), "local endpoint: the listener's");
        Assert.That(body[2], Is.Not.Empty, "a connection id");
    }

    [Test, CancelAfter(60_000)]
    public async Task AConnectionWhoseAppDoesNotReadIsBackPressured(CancellationToken token)
    {
        // The app reads nothing for a second: the transport stops reading at MaxReadBufferSize (1 MiB here, as
        // Kestrel's socket transport), so the client can push only that plus the kernel's socket buffers.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        long consumed = 0;
        await using var app = await TestApp.StartAsync(target, o => o.Listen(IPAddress.Loopback, 0, l => l.Run(async connection =>
        {
            await release.Task;
            while (true)
            {
                var result = await connection.Transport.Input.ReadAsync();
                Interlocked.Add(ref consumed, result.Buffer.Length);
                connection.Transport.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                    break;
            }
        })));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { SendBufferSize = 64 * 1024 };
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        socket.Blocking = false;
        var chunk = new byte[64 * 1024];
        long sent = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(1) && sent < (256L << 20))
        {
            try
            {
                sent += socket.Send(chunk);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                await Task.Delay(5, token);
            }
        }
        Assert.That(sent, Is.LessThan(48L << 20), $"{sent >> 20} MiB accepted while the app read nothing");
        release.SetResult();
        socket.Blocking = true;
        socket.Shutdown(SocketShutdown.Send);
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (Interlocked.Read(ref consumed) < sent && deadline.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(10, token);
        Assert.That(Interlocked.Read(ref consumed), Is.EqualTo(sent), "every byte reached the app once it read");
    }

    [Test, CancelAfter(60_000)]
    public async Task AListeningHandleFromTheHost(CancellationToken token)
    {
        // Socket activation hands Kestrel a listening descriptor (ListenHandle → FileHandleEndPoint).
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        int handle = Interop.LibC.dup((int)listener.Handle); // a descriptor of its own, as systemd passes one
        try
        {
            await using var app = await TestApp.StartAsync(target, o => o.ListenHandle((ulong)handle));
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
        }
        finally
        {
            Interop.LibC.close(handle); // the host's to close: transports take it with ownsHandle false (KestrelParityTests)
        }
    }

    [Test, CancelAfter(180_000)]
    public async Task LargeUploadAndDownloadArriveWhole(CancellationToken token)
    {
        long size = target.IsModel ? 16L << 20 : 100L << 20; // the models add a system call or two per event
        await using var app = await TestApp.StartAsync(target);
        using var client = Client(app);

        var upload = new PatternContent(size);
        using var posted = await client.PostAsync("/sha256", upload, token);
        Assert.That(await posted.Content.ReadAsStringAsync(token), Is.EqualTo($"{size} {upload.Sha256Hex}"), "upload: byte count and SHA-256");

        using var response = await client.GetAsync($"/bytes/{size}", HttpCompletionOption.ResponseHeadersRead, token);
        await using var stream = await response.Content.ReadAsStreamAsync(token);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long total = 0;
        for (int n; (n = await stream.ReadAsync(buffer, token)) > 0;)
        {
            sha.AppendData(buffer, 0, n);
            total += n;
        }
        Assert.That(total, Is.EqualTo(size));
        Assert.That(Convert.ToHexString(sha.GetHashAndReset()), Is.EqualTo(new PatternContent(size).Sha256Hex), "download: SHA-256");
    }

    [Test, CancelAfter(60_000)]
    public async Task PipelinedRequestsAreAnsweredInOrder(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        const int requests = 16;
        var batch = new StringBuilder();
        for (int i = 0; i < requests; i++)
            batch.Append(i % 2 == 0 ? "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" : $"GET /bytes/{i} HTTP/1.1\r\nHost: x\r\n\r\n");
        await socket.SendAsync(Encoding.ASCII.GetBytes(batch.ToString()), token); // every request in one segment
        var text = await ReadResponsesAsync(socket, requests, token);
        var bodies = text.Split("HTTP/1.1 200 OK").Skip(1).Select(r => r[(r.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]).ToArray();
        Assert.That(bodies, Has.Length.EqualTo(requests), text);
        for (int i = 0; i < requests; i++)
            Assert.That(bodies[i], Is.EqualTo(i % 2 == 0 ? "Hello, World!" : Encoding.Latin1.GetString(TestApp.Pattern(i))), $"response {i}");
    }

    [Test, CancelAfter(60_000)]
    public async Task WebSocketEcho(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var ws = new ClientWebSocket();
        await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{app.Port}/ws"), token);
        var buffer = new byte[256 * 1024];
        foreach (int size in new[] { 1, 125, 126, 65_536, 200_000 })
        {
            var message = TestApp.Pattern(size);
            await ws.SendAsync(message, WebSocketMessageType.Binary, true, token);
            int received = 0;
            WebSocketReceiveResult result;
            do
            {
                result = await ws.ReceiveAsync(new ArraySegment<byte>(buffer, received, buffer.Length - received), token);
                received += result.Count;
            } while (!result.EndOfMessage);
            Assert.That(buffer.AsSpan(0, received).SequenceEqual(message), Is.True, $"echo of {size} bytes");
        }
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", token);
        Assert.That(ws.State, Is.EqualTo(WebSocketState.Closed));
    }

    [Test, CancelAfter(120_000)]
    public async Task ManyConcurrentKeepAliveClients(CancellationToken token)
    {
        // select watches descriptors below FD_SETSIZE (1 024), and the clients live in this process too.
        int clients = target.Name == "select" ? 200 : target.IsModel ? 300 : 1000;
        ResourceLimitsForTests.Raise();
        await using var app = await TestApp.StartAsync(target);
        var sockets = new List<Socket>();
        try
        {
            for (int i = 0; i < clients; i++)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                sockets.Add(s);
                await s.ConnectAsync(IPAddress.Loopback, app.Port, token);
            }
            var request = Encoding.ASCII.GetBytes("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
            for (int round = 0; round < 3; round++)
            {
                await Task.WhenAll(sockets.Select(async s =>
                {
                    await s.SendAsync(request, token);
                    var text = await ReadResponsesAsync(s, 1, token);
                    Assert.That(text, Does.StartWith("HTTP/1.1 200 OK").And.EndWith("Hello, World!"));
                }));
            }
        }
        finally
        {
            sockets.ForEach(s => s.Dispose());
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task AClientThatResetsMidBodyLeavesTheServerServing(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
            await socket.SendAsync(Encoding.ASCII.GetBytes("POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"), token);
            await socket.SendAsync(new byte[1 << 20], token);
            await app.UploadStarted.Task.WaitAsync(TimeSpan.FromSeconds(20)); // the handler is reading the body
            socket.LingerState = new LingerOption(true, 0); // close() sends RST
        }
        var outcome = await app.UploadOutcome.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.That(outcome, Is.Not.Null, "the handler's body read fails when the client resets");
        using var client = Client(app);
        Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello), "the server keeps serving");
    }

    [Test, CancelAfter(90_000)]
    public async Task ASlowReaderIsBackPressuredWithoutUnboundedServerMemory(CancellationToken token)
    {
        const long size = 256L << 20;
        await using var app = await TestApp.StartAsync(target);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 64 * 1024 };
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET /bytes/{size} HTTP/1.1\r\nHost: x\r\n\r\n"), token);
        await Task.Delay(1000, token); // not reading
        long stalled = Interlocked.Read(ref app.SlowStreamWritten);
        // Socket buffers (a few MiB on loopback) plus the transport's 64 KiB write threshold and Kestrel's own
        // response buffering: tens of MiB at most, never the 256 MiB the handler wants to write.
        Assert.That(stalled, Is.LessThan(48L << 20), $"{stalled >> 20} MiB written while the client read nothing");
        var buffer = new byte[256 * 1024];
        long received = 0, expected = long.MaxValue;
        var head = new StringBuilder();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (received < expected && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(), token);
            if (n == 0)
                break;
            if (expected == long.MaxValue)
            {
                head.Append(Encoding.Latin1.GetString(buffer, 0, Math.Min(n, 1024)));
                int end = head.ToString().IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                    expected = end + 4 + size;
            }
            received += n;
        }
        Assert.That(received, Is.EqualTo(expected), "the head and every byte of the body arrived");
        // The handler counts a chunk after its write completed, which may be just after the bytes arrived here.
        while (Interlocked.Read(ref app.SlowStreamWritten) < size && clock.Elapsed < TimeSpan.FromSeconds(70))
            await Task.Delay(10, token);
        Assert.That(Interlocked.Read(ref app.SlowStreamWritten), Is.EqualTo(size), "every byte was written once the client read");
    }

    [Test, CancelAfter(60_000)]
    public async Task GracefulShutdownLetsARequestInFlightComplete(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var client = Client(app);
        var inFlight = client.GetStringAsync("/delay/700", token);
        await Task.Delay(200, token);
        var stopping = app.StopAsync();
        Assert.That(await inFlight.WaitAsync(token), Is.EqualTo("late but complete"));
        await stopping.WaitAsync(token);
        await AssertThrowsAsync<HttpRequestException>(() => client.GetStringAsync("/hello", token), "no longer listening");
    }

    [Test, CancelAfter(60_000)]
    public async Task AnAbortedConnectionReachesTheClientAsAnError(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using var client = Client(app);
        await AssertThrowsAsync<HttpRequestException>(() => client.GetStringAsync("/abort", token), "the aborted request");
        Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello), "the server goes on");
    }

    [Test, CancelAfter(60_000)]
    public async Task HalfCloseInBothDirectionsAtTheConnectionLevel(CancellationToken token)
    {
        // A connection handler (Kestrel's ListenOptions.Run) sees the transport directly: the peer's FIN completes
        // its input after every byte; completing its output sends FIN after every byte.
        await using var app = await TestApp.StartAsync(target, o => o.Listen(IPAddress.Loopback, 0, l => l.Run(async connection =>
        {
            long total = 0;
            while (true)
            {
                var result = await connection.Transport.Input.ReadAsync();
                total += result.Buffer.Length;
                connection.Transport.Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                    break;
            }
            await connection.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes($"got {total} bytes"));
            await connection.Transport.Output.CompleteAsync();
        })));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        var payload = TestApp.Pattern(3_000_000);
        await socket.SendAsync(payload, token);
        socket.Shutdown(SocketShutdown.Send);
        Assert.That(await ReadToEndAsync(socket, token), Is.EqualTo($"got {payload.Length} bytes"), "the reply, then end of stream");
    }

    [Test, CancelAfter(60_000)]
    public async Task AHalfClosedHttpRequestEndsTheConnectionAsKestrelDoes(CancellationToken token)
    {
        // Kestrel reads a client's FIN as the end of the connection (its socket transport answers nothing): the
        // IoMux transport must end it too, promptly, and keep serving.
        await using var app = await TestApp.StartAsync(target);
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
            await socket.SendAsync(Encoding.ASCII.GetBytes("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"), token);
            socket.Shutdown(SocketShutdown.Send);
            string text;
            try
            {
                text = await ReadToEndAsync(socket, token); // returns: the server closed its side too
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                text = ""; // or reset it
            }
            Assert.That(text, Is.Empty.Or.StartWith("HTTP/1.1 200 OK"));
        }
        using var client = Client(app);
        Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
    }

    [Test, CancelAfter(60_000)]
    public async Task HttpsWithASelfSignedCertificate(CancellationToken token)
    {
        using var certificate = SelfSigned();
        await using var app = await TestApp.StartAsync(target, o => o.Listen(IPAddress.Loopback, 0, l => l.UseHttps(certificate)));
        using var client = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = (_, cert, _, _) => cert?.GetCertHashString() == certificate.GetCertHashString() },
        }) { BaseAddress = app.BaseAddress };
        Assert.That(app.BaseAddress.Scheme, Is.EqualTo("https"));
        Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
        var body = TestApp.Pattern(300_000);
        using var echoed = await client.PostAsync("/echo", new ByteArrayContent(body), token);
        Assert.That(await echoed.Content.ReadAsByteArrayAsync(token), Is.EqualTo(body));
    }

    [Test, CancelAfter(60_000)]
    public async Task UnixDomainSocketEndpoint(CancellationToken token)
    {
        var path = Path.Combine(Path.GetTempPath(), $"iomux-kestrel-{Guid.NewGuid():N}.sock");
        try
        {
            await using var app = await TestApp.StartAsync(target, o => o.ListenUnixSocket(path));
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), token);
            await socket.SendAsync(Encoding.ASCII.GetBytes("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), token);
            Assert.That(await ReadToEndAsync(socket, token), Does.EndWith("Hello, World!"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task StoppingTheAppReleasesEveryDescriptor(CancellationToken token)
    {
        int before = OpenDescriptors();
        await using (var app = await TestApp.StartAsync(target))
        {
            using var client = Client(app);
            for (int i = 0; i < 20; i++)
                Assert.That(await client.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello));
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        int after = OpenDescriptors();
        // The runtime may keep a descriptor or two of its own (the socket engine's epoll and its pipe).
        Assert.That(after, Is.LessThanOrEqualTo(before + 2), $"descriptors: {before} before, {after} after");
    }

    private static async Task AssertThrowsAsync<T>(Func<Task> action, string what) where T : Exception
    {
        try
        {
            await action();
        }
        catch (T)
        {
            return;
        }
        Assert.Fail($"{what}: expected {typeof(T).Name}");
    }

    private static int OpenDescriptors() => Directory.GetFiles("/proc/self/fd").Length;

    private static X509Certificate2 SelfSigned()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>Reads until <paramref name="responses"/> complete responses (Content-Length bodies) have arrived.</summary>
    private static async Task<string> ReadResponsesAsync(Socket socket, int responses, CancellationToken token)
    {
        var text = new StringBuilder();
        var buffer = new byte[64 * 1024];
        while (CountComplete(text.ToString()) < responses)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(), token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), token);
            if (n == 0)
                break;
            text.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
        return text.ToString();
    }

    private static int CountComplete(string text)
    {
        int count = 0, at = 0;
        while (true)
        {
            int head = text.IndexOf("\r\n\r\n", at, StringComparison.Ordinal);
            if (head < 0)
                return count;
            var headers = text[at..head];
            int length = 0;
            foreach (var line in headers.Split("\r\n"))
                if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                    length = int.Parse(line["Content-Length:".Length..].Trim());
            if (text.Length < head + 4 + length)
                return count;
            count++;
            at = head + 4 + length;
        }
    }

    private static async Task<string> ReadToEndAsync(Socket socket, CancellationToken token)
    {
        var text = new StringBuilder();
        var buffer = new byte[16 * 1024];
        for (int n; (n = await socket.ReceiveAsync(buffer.AsMemory(), token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), token)) > 0;)
            text.Append(Encoding.Latin1.GetString(buffer, 0, n));
        return text.ToString();
    }

    /// <summary>A request body of the /bytes pattern, streamed, with its SHA-256 known in advance.</summary>
    private sealed class PatternContent : HttpContent
    {
        private readonly long _size;
        private static readonly byte[] Block = TestApp.Pattern(64 * 1024);

        public PatternContent(long size)
        {
            _size = size;
            Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            for (long at = 0; at < size; at += Block.Length)
                sha.AppendData(Block, 0, (int)Math.Min(Block.Length, size - at));
            Sha256Hex = Convert.ToHexString(sha.GetHashAndReset());
        }

        public string Sha256Hex { get; }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            for (long at = 0; at < _size; at += Block.Length)
                await stream.WriteAsync(Block.AsMemory(0, (int)Math.Min(Block.Length, _size - at)));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = _size;
            return true;
        }
    }
}

internal static class ResourceLimitsForTests
{
    public static void Raise() => Conformance.ResourceLimits.RaiseOpenFileLimit();
}
