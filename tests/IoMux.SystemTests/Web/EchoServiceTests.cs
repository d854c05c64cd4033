using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using IoMux.Web.Echo;

namespace IoMux.Tests.Web;

/// <summary>The loop-per-thread echo server: concurrent clients pushing more than the socket buffers hold get
/// every byte back, on every backend that runs here.</summary>
[Category("System")]
[TestFixture("epoll")]
[TestFixture("poll")]
[TestFixture("select")]
public sealed class EchoServiceTests(string backend)
{
    [Test, CancelAfter(60_000)]
    public async Task ConcurrentClientsGetEveryByteBack(CancellationToken cancellation)
    {
        using var echo = new EchoService(new IPEndPoint(IPAddress.Loopback, 0), threadCount: 2, backend);
        var runs = Enumerable.Range(0, 16).Select(async i =>
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(echo.Endpoint, cancellation);
            var payload = new byte[1 << 20];
            new Random(i).NextBytes(payload);
            var sending = Task.Run(async () =>
            {
                for (int at = 0; at < payload.Length;)
                    at += await socket.SendAsync(payload.AsMemory(at), SocketFlags.None, cancellation);
            }, cancellation);
            var received = new byte[payload.Length];
            for (int at = 0; at < received.Length;)
            {
                int n = await socket.ReceiveAsync(received.AsMemory(at), SocketFlags.None, cancellation);
                Assert.That(n, Is.GreaterThan(0), "the server closed early");
                at += n;
            }
            await sending;
            return SHA256.HashData(received).SequenceEqual(SHA256.HashData(payload));
        });
        Assert.That(await Task.WhenAll(runs), Is.All.True);
    }

}

/// <summary>select cannot watch descriptors at or past FD_SETSIZE (1024): a connection accepted there is closed at
/// once (not left hanging, and the loop does not die), and serving goes on once low numbers are free.</summary>
[Category("System")]
public sealed class SelectCeilingTests
{
    private const string backend = "select";

    [Test, CancelAfter(60_000)]
    public async Task AConnectionTheBackendCannotWatchIsClosedAndServingGoesOn(CancellationToken cancellation)
    {
        using var echo = new EchoService(new IPEndPoint(IPAddress.Loopback, 0), threadCount: 1, backend);
        var filler = new List<Microsoft.Win32.SafeHandles.SafeFileHandle>();
        try
        {
            while (filler.Count < 1100)
                filler.Add(File.OpenHandle("/dev/null"));
            using var unwatchable = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await unwatchable.ConnectAsync(echo.Endpoint, cancellation);
            var buffer = new byte[16];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            int n;
            try
            {
                n = await unwatchable.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            }
            catch (SocketException)
            {
                n = 0; // a reset says the same: closed
            }
            Assert.That(n, Is.EqualTo(0), "the connection past FD_SETSIZE was not closed");
        }
        finally
        {
            foreach (var handle in filler)
                handle.Dispose();
        }
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(echo.Endpoint, cancellation);
        await client.SendAsync(new byte[] { 1, 2, 3 }, SocketFlags.None, cancellation);
        var back = new byte[3];
        int got = 0;
        while (got < 3)
        {
            int n = await client.ReceiveAsync(back.AsMemory(got), SocketFlags.None, cancellation);
            Assert.That(n, Is.GreaterThan(0), "the echo closed early");
            got += n;
        }
        Assert.That(back, Is.EqualTo(new byte[] { 1, 2, 3 }));
    }
}
