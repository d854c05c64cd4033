using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using IoMux.Loop;
using IoMux.Web;

namespace IoMux.Tests.Web;

/// <summary>Sending files into TCP sockets on loopback, driven by writable readiness on the event loop: with
/// sendfile(2) and with the pread/write fallback, against a slow reader, a peer that resets, and a file that is
/// shorter than the range.</summary>
[TestFixture(FileSendMethod.SendFile)]
[TestFixture(FileSendMethod.Copy)]
public sealed class FileSenderTests(FileSendMethod method)
{
    private string _path = null!;
    private byte[] _content = null!;

    [SetUp]
    public void CreateFile()
    {
        _path = Path.Combine(Path.GetTempPath(), $"iomux-sendfile-{Guid.NewGuid():N}.bin");
        _content = new byte[8 << 20];
        new Random(21).NextBytes(_content);
        File.WriteAllBytes(_path, _content);
    }

    [TearDown]
    public void DeleteFile() => File.Delete(_path);

    [Test, CancelAfter(60_000)]
    public async Task SlowReaderGetsEveryByteWhileTheSenderWaitsForWritable()
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        using (receiver)
        {
            var reading = Task.Run(() => ReadAll(receiver, pauseEvery: 64 * 1024));
            var (status, waits, sent) = Drive(sender, 0, _content.Length);
            Assert.That(status, Is.EqualTo(SendStatus.Completed));
            Assert.That(sent, Is.EqualTo(_content.Length));
            Assert.That(waits, Is.GreaterThan(0), "the slow reader never made the sender wait: the test did not test back-pressure");
            sender.Shutdown(SocketShutdown.Send);
            var received = await reading;
            Assert.That(SHA256.HashData(received), Is.EqualTo(SHA256.HashData(_content)));
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task ARangeSendsExactlyThatSlice()
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        using (receiver)
        {
            var reading = Task.Run(() => ReadAll(receiver, pauseEvery: 0));
            var (status, _, sent) = Drive(sender, 1000, 100_000);
            Assert.That(status, Is.EqualTo(SendStatus.Completed));
            Assert.That(sent, Is.EqualTo(100_000));
            sender.Shutdown(SocketShutdown.Send);
            Assert.That(await reading, Is.EqualTo(_content.AsSpan(1000, 100_000).ToArray()));
        }
    }

    [Test, CancelAfter(60_000)]
    public void APeerThatResetsMidFileIsATypedErrorNamingTheErrno()
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        {
            var buffer = new byte[1 << 20];
            int got = 0;
            var resetter = Task.Run(() =>
            {
                while (got < buffer.Length)
                    got += receiver.Receive(buffer, got, buffer.Length - got, SocketFlags.None);
                receiver.LingerState = new LingerOption(true, 0);
                receiver.Dispose(); // RST with the file half sent
            });
            var error = Assert.Throws<PosixException>(() => Drive(sender, 0, _content.Length));
            Assert.That(error!.ErrorName, Is.AnyOf("ECONNRESET", "EPIPE"));
            Assert.That(error.Operation, Is.EqualTo(method == FileSendMethod.SendFile ? "sendfile" : "write"));
            resetter.Wait();
        }
    }

    [Test]
    public void AFileShorterThanTheRangeEndsWithFileShrank()
    {
        var (sender, receiver) = ConnectedPair();
        using (sender)
        using (receiver)
        {
            _ = Task.Run(() => ReadAll(receiver, pauseEvery: 0));
            var error = Assert.Throws<FileShrankException>(() => Drive(sender, _content.Length - 10, 100));
            Assert.That(error!.Offset, Is.EqualTo(_content.Length));
        }
    }

    /// <summary>Runs the sender on an event loop: one writable source, SendTo on each readiness.</summary>
    private (SendStatus Status, int Waits, long Sent) Drive(Socket socket, long offset, long count)
    {
        using var file = File.OpenHandle(_path);
        using var sender = new FileSender(file, offset, count, method);
        using var loop = new EventLoop(PollerFactory.Create());
        int waits = 0;
        var status = sender.SendTo((int)socket.Handle);
        if (status == SendStatus.WouldBlock)
        {
            Exception? failure = null;
            using var source = loop.AddIo((int)socket.Handle, Interest.Writable, (_, _) =>
            {
                waits++;
                try
                {
                    status = sender.SendTo((int)socket.Handle);
                }
                catch (Exception e)
                {
                    failure = e;
                    loop.Exit(1);
                    return;
                }
                if (status == SendStatus.Completed)
                    loop.Exit(0);
            });
            loop.Run();
            if (failure is not null)
                throw failure;
        }
        return (status, waits, sender.BytesSent);
    }

    private static (Socket Sender, Socket Receiver) ConnectedPair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var receiver = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        receiver.Connect(listener.LocalEndPoint!);
        var sender = listener.Accept();
        sender.Blocking = false;
        // A small send buffer makes back-pressure arrive early, without megabytes queued in the kernel.
        sender.SendBufferSize = 64 * 1024;
        receiver.ReceiveBufferSize = 64 * 1024;
        return (sender, receiver);
    }

    private static byte[] ReadAll(Socket socket, int pauseEvery)
    {
        using var output = new MemoryStream();
        var buffer = new byte[16 * 1024];
        int sincePause = 0;
        while (true)
        {
            int n = socket.Receive(buffer);
            if (n == 0)
                return output.ToArray();
            output.Write(buffer, 0, n);
            sincePause += n;
            if (pauseEvery > 0 && sincePause >= pauseEvery)
            {
                sincePause = 0;
                Thread.Sleep(2);
            }
        }
    }
}
