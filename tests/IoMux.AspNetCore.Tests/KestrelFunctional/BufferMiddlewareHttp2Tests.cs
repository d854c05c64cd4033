using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace IoMux.Tests.AspNetCore;

/// <summary>Restated from aspnetcore's FunctionalTests MaxRequestBufferSizeTests, ConnectionMiddlewareTests and
/// Http2/ShutdownTests.</summary>
public sealed partial class KestrelFunctionalTests
{
    private const int UploadLength = 16 * 1024 * 1024; // more than the kernel's buffers hold (tcp_rmem max 6 MiB + the client's)
    private const int MaxSendSize = 4096;

    /// <summary>MaxRequestBufferSizeTests.StartWebHost's app: reads the body only when told, checks every byte.</summary>
    private static RequestDelegate UploadApp(byte[] expected, Task startReading, Task clientFinished) => async ctx =>
    {
        await startReading.WaitAsync(TimeSpan.FromSeconds(60), ctx.RequestAborted);
        var buffer = new byte[expected.Length];
        int read = 0;
        while (read < buffer.Length)
        {
            int n = await ctx.Request.Body.ReadAsync(buffer.AsMemory(read));
            if (n == 0)
                break;
            read += n;
        }
        await clientFinished.WaitAsync(TimeSpan.FromSeconds(60));
        if (await ctx.Request.Body.ReadAsync(new byte[1]) != 0 || !buffer.AsSpan().SequenceEqual(expected))
        {
            ctx.Response.StatusCode = 500;
            await ctx.Response.WriteAsync("the body differs");
            return;
        }
        await ctx.Response.WriteAsync($"bytesRead: {read}");
    };

    /// <summary>MaxRequestBufferSizeTests.LargeUpload's client: sends <paramref name="data"/> in 4 KiB writes,
    /// recording progress.</summary>
    private sealed class Uploader(RawClient client, byte[] data)
    {
        public long Written;
        public long LastWrite = Stopwatch.GetTimestamp();

        public async Task SendAsync(CancellationToken token)
        {
            while (Written < data.Length)
            {
                int size = (int)Math.Min(data.Length - Written, MaxSendSize);
                await client.Socket.SendAsync(data.AsMemory((int)Written, size), SocketFlags.None, token);
                Written += size;
                Volatile.Write(ref LastWrite, Stopwatch.GetTimestamp());
            }
        }

        /// <summary>Waits (bounded) until no write made progress for 300 ms and at least <paramref name="minimum"/> went out:
        /// the client is paused.</summary>
        public async Task WaitForPauseAsync(long minimum, Task sending, CancellationToken token)
        {
            var deadline = Stopwatch.StartNew();
            while ((Stopwatch.GetElapsedTime(Volatile.Read(ref LastWrite)) < TimeSpan.FromMilliseconds(300) || Volatile.Read(ref Written) < minimum)
                && !sending.IsCompleted && deadline.Elapsed < TimeSpan.FromSeconds(20))
                await Task.Delay(10, token);
        }
    }

    [Test, CancelAfter(90_000), Description("MaxRequestBufferSizeTests.LargeUpload(16 KiB, expectPause: true)")]
    public async Task AnUploadIsPausedAtTheReadBufferLimitAndArrivesWhole(CancellationToken token)
    {
        var host = await SmallAsync();
        var data = new byte[UploadLength];
        new Random(23).NextBytes(data);
        var startReading = Signal();
        var finished = Signal();
        host.Handler = UploadApp(data, startReading.Task, finished.Task);
        using var client = await RawClient.ConnectAsync(host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.0", $"Content-Length: {data.Length}", "", "");
        var uploader = new Uploader(client, data);
        var sending = uploader.SendAsync(token).ContinueWith(t => { finished.TrySetResult(); return t; }, token).Unwrap();
        long minimum = SmallBuffer - MaxSendSize + 1;
        await uploader.WaitForPauseAsync(minimum, sending, token);
        Assert.That(uploader.Written, Is.InRange(minimum, data.Length - 1), "the client was paused: the transport stopped reading at its limit");
        startReading.TrySetResult();
        await Within(sending, token, 60);
        await client.ReceiveAsync($"bytesRead: {data.Length}", token, 30);
    }

    [Test, CancelAfter(90_000), Description("MaxRequestBufferSizeTests.LargeUpload(null, expectPause: false)")]
    public async Task WithoutAReadBufferLimitAnUploadIsNeverPaused(CancellationToken token)
    {
        var data = new byte[UploadLength];
        new Random(24).NextBytes(data);
        var startReading = Signal();
        var finished = Signal();
        _host.Handler = UploadApp(data, startReading.Task, finished.Task);
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.0", $"Content-Length: {data.Length}", "", "");
        var uploader = new Uploader(client, data);
        await Within(uploader.SendAsync(token), token, 60); // all of it, before the app reads a byte
        finished.TrySetResult();
        startReading.TrySetResult();
        await client.ReceiveAsync($"bytesRead: {data.Length}", token, 30);
    }

    [Test, CancelAfter(90_000), Description("MaxRequestBufferSizeTests.ServerShutsDownGracefullyWhenMaxRequestBufferSizeExceeded")]
    public async Task TheServerStopsCleanlyWhileAClientIsPausedAtTheLimit(CancellationToken token)
    {
        var host = await FunctionalHost.StartAsync(target, (h, o) =>
        {
            o.Limits.MaxRequestBufferSize = SmallBuffer;
            o.Limits.MaxRequestHeadersTotalSize = SmallBuffer;
            o.Limits.MinRequestBodyDataRate = null;
            h.Listen(o, "http", IPAddress.Loopback);
        }, maxReadBufferSize: SmallBuffer);
        var data = new byte[UploadLength];
        var never = Signal();
        host.Handler = UploadApp(data, never.Task, never.Task);
        using var client = await RawClient.ConnectAsync(host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.0", $"Content-Length: {data.Length}", "", "");
        var uploader = new Uploader(client, data);
        var sending = uploader.SendAsync(token);
        await uploader.WaitForPauseAsync(SmallBuffer - MaxSendSize + 1, sending, token);
        Assert.That(sending.IsCompleted, Is.False, "the client is paused");
        // Stopped while the connection has no read interest: the graceful wait ends after 1 s, the connection is
        // aborted, and the host disposes without an exception or a hang.
        using (var grace = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
            await Within(host.StopAsync(grace.Token), token, 20);
        await Within(host.DisposeAsync().AsTask(), token, 20);
        var (_, end) = await client.DrainAsync(token);
        Assert.That(end, Is.AnyOf("FIN", "RST"), "the paused client's connection ended with the server");
    }

    // --- ConnectionMiddlewareTests ---

    private volatile RecordingDuplexPipe? _replaced;
    private TaskCompletionSource _replacedRelease = Signal();

    [Test, CancelAfter(30_000), Description("ConnectionMiddlewareTests.ThrowingSynchronousConnectionMiddlewareDoesNotCrashServer")]
    public async Task AThrowingConnectionMiddlewareClosesItsConnectionAndTheServerServesOn(CancellationToken token)
    {
        using (var client = await RawClient.ConnectAsync(_host.Port("throwing"), token))
        {
            await client.SendAsync(token, "POST / HTTP/1.0", "Content-Length: 1000", "\r\n");
            Assert.That(await client.ReadToEndAsync(token), Is.AnyOf("FIN", "RST"), "the connection is closed");
            Assert.That(client.Received, Is.Empty);
        }
        _host.Handler = ctx => ctx.Response.WriteAsync("still serving");
        using var next = await RawClient.ConnectAsync(_host.Port(), token);
        await next.SendAsync(token, EmptyGet);
        await next.ReceiveAsync("still serving", token);
    }

    [Test, CancelAfter(30_000), Description("ConnectionMiddlewareTests.DisposeAsyncAfterReplacingTransportClosesConnection")]
    public async Task DisposingAConnectionWhoseTransportWasReplacedClosesTheSocketAndLeavesTheReplacement(CancellationToken token)
    {
        _replacedRelease = Signal();
        try
        {
            using var client = await RawClient.ConnectAsync(_host.Port("replacing"), token);
            Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("FIN"), "the connection closes in order");
        }
        finally
        {
            _replacedRelease.TrySetResult();
        }
        Assert.That(_replaced, Is.Not.Null, "the middleware ran");
        Assert.That(_replaced!.WasCompleted, Is.False, "the transport completed its own pipes, not the replacement");
    }

    /// <summary>ConnectionMiddlewareTests.MockDuplexPipe: records Complete, throws on anything else.</summary>
    private sealed class RecordingDuplexPipe : IDuplexPipe
    {
        public bool WasCompleted { get; private set; }
        public PipeReader Input => new Reader(this);
        public PipeWriter Output => new Writer(this);

        private sealed class Reader(RecordingDuplexPipe pipe) : PipeReader
        {
            public override void AdvanceTo(SequencePosition consumed) => throw new NotSupportedException();
            public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => throw new NotSupportedException();
            public override void CancelPendingRead() => throw new NotSupportedException();
            public override void Complete(Exception? exception = null) => pipe.WasCompleted = true;
            public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();
            public override bool TryRead(out ReadResult result) => throw new NotSupportedException();
        }

        private sealed class Writer(RecordingDuplexPipe pipe) : PipeWriter
        {
            public override void Advance(int bytes) => throw new NotSupportedException();
            public override void CancelPendingFlush() => throw new NotSupportedException();
            public override void Complete(Exception? exception = null) => pipe.WasCompleted = true;
            public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();
            public override Memory<byte> GetMemory(int sizeHint = 0) => throw new NotSupportedException();
            public override Span<byte> GetSpan(int sizeHint = 0) => throw new NotSupportedException();
        }
    }

    // --- Http2/ShutdownTests (h2c with prior knowledge: the transport under HTTP/2 is the same without TLS) ---

    private static HttpClient Http2Client(int port) => new(new SocketsHttpHandler())
    {
        BaseAddress = new Uri($"http://127.0.0.1:{port}"),
        DefaultRequestVersion = HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = TimeSpan.FromSeconds(20),
    };

    [Test, CancelAfter(30_000), Description("Http2.ShutdownTests.ConnectionClosedWithoutActiveRequestsOrGoAwayFIN")]
    public async Task AnHttp2ClientThatLeavesWithoutGoAwayGetsAFinBack(CancellationToken token)
    {
        _host.Handler = ctx => ctx.Response.WriteAsync("hello world " + ctx.Request.Protocol);
        var client = Http2Client(_host.Port("h2c"));
        // Five round trips, as there: HttpClient's window-tuning PINGs are done, so its close is a plain FIN.
        for (int i = 0; i < 5; i++)
            Assert.That(await client.GetStringAsync("/", token), Is.EqualTo("hello world HTTP/2"));
        client.Dispose(); // closes the socket; no GOAWAY
        await _host.WaitForLogAsync(l => l.IsTransport && l.Event.Name == "ConnectionReadFin", "the transport's ConnectionReadFin", token);
        await _host.WaitForLogAsync(l => l.IsTransport && l.Event.Name == "ConnectionWriteFin", "the transport's ConnectionWriteFin", token);
        await _host.WaitForLogAsync(l => l.Event.Name == "Http2ConnectionClosed", "Kestrel's Http2ConnectionClosed", token);
    }

    [Test, CancelAfter(60_000), Description("Http2.ShutdownTests.GracefulShutdownWaitsForRequestsToFinish")]
    public async Task AGracefulStopWaitsForAnHttp2RequestInFlight(CancellationToken token)
    {
        var host = await FunctionalHost.StartAsync(target, (h, o) => h.Listen(o, "h2c", IPAddress.Loopback, l => l.Protocols = HttpProtocols.Http2));
        var started = Signal();
        var unblocked = Signal();
        host.Handler = async ctx =>
        {
            started.TrySetResult();
            await unblocked.Task.WaitAsync(TimeSpan.FromSeconds(20));
            await ctx.Response.WriteAsync("hello world " + ctx.Request.Protocol);
        };
        try
        {
            using var client = Http2Client(host.Port("h2c"));
            var request = client.GetStringAsync("/", token);
            await Within(started.Task, token);
            using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var stop = host.StopAsync(stopping.Token);
            await host.WaitForLogAsync(l => l.Event.Name == "Http2ConnectionClosing", "Kestrel's Http2ConnectionClosing", token);
            unblocked.TrySetResult();
            Assert.That(await Within(request, token), Is.EqualTo("hello world HTTP/2"));
            await Within(stop, token, 20);
            Assert.That(host.Logs, Has.Some.Matches<LogLine>(l => l!.Message.Contains("is closed. The last processed stream ID was 1.", StringComparison.Ordinal)));
        }
        finally
        {
            unblocked.TrySetResult();
            await host.DisposeAsync();
        }
    }
}
